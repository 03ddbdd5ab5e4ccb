"""The dashboard in a real browser (Debian's chromium, driven by Playwright) and the live
WebSocket feed, over data that went through the real broker and ClickHouse."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import schemas as s
from tests.integration.kafka_io import produce
from tests.integration.serve_process import ROOT, ServeProcess

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

SOURCE = s.Source(runner_id="it-dash", worker_id="w", host="h", pid=1, sdk_version="0")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _error(category: s.Category) -> s.ErrorInfo:
    return s.ErrorInfo(
        category=category,
        error_type="builtins.RuntimeError",
        message="boom",
        fingerprint=f"fp-{category}",
        severity="medium",
        retryable=category == "transient",
        rule="test",
    )


def _history(template: str) -> list[s.Envelope]:
    """Attempts over the last few minutes: some transient and resource failures."""
    now = datetime.now(UTC)
    out: list[s.Envelope] = []
    for i in range(60):
        at = now - timedelta(seconds=10 * i)
        task = {
            "task_id": f"{template}-{i}",
            "template_id": template,
            "operation_type": "img",
            "attempt": 1,
            "source": SOURCE,
            "occurred_at": at,
        }
        if i % 3 == 0 or i % 7 == 0:
            category: s.Category = "transient" if i % 3 == 0 else "resource"
            out.append(s.TaskFailed(**task, error=_error(category), attempts=1))
        else:
            out.append(s.TaskSucceeded(**task, duration_ms=3))
    return out


async def test_the_live_feed_pushes_errors_with_filters(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A client filtered to type=error and one template gets that template's failure as
    {"type": "error", ...} and nothing of another template."""
    import websockets

    run = uuid.uuid4().hex[:6]
    serve = ServeProcess(kafka_bootstrap, tmp_path, group_id=f"ws-{run}").start()
    try:
        url = serve.url.replace("http", "ws") + f"/api/v1/errors/ws?type=error&template_id=t-{run}"
        async with websockets.connect(url) as socket:
            ready = json.loads(await asyncio.wait_for(socket.recv(), 30))
            assert ready["type"] == "ready"
            other = s.TaskFailed(
                task_id="x",
                template_id="elsewhere",
                operation_type="o",
                attempt=1,
                attempts=1,
                error=_error("transient"),
                source=SOURCE,
            )
            mine = s.TaskFailed(
                task_id=f"task-{run}",
                template_id=f"t-{run}",
                operation_type="o",
                attempt=1,
                attempts=1,
                error=_error("permanent"),
                source=SOURCE,
            )
            await produce(kafka_bootstrap, [other, mine])
            item = json.loads(await asyncio.wait_for(socket.recv(), 30))
            while item["type"] == "ping":
                item = json.loads(await asyncio.wait_for(socket.recv(), 30))
        assert item["type"] == "error"
        assert item["template_id"] == f"t-{run}"
        assert item["event"]["event_id"] == mine.event_id
    finally:
        serve.stop()


async def test_dashboard_draws_the_chart_and_shows_a_live_event(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Headless chromium loads /, sees the error-rate chart drawn from ClickHouse data,
    sees an event produced afterwards appear in the live feed, and saves a screenshot."""
    from playwright.async_api import async_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"chromium not found at {CHROMIUM} (make tools installs it)")
    run = uuid.uuid4().hex[:6]
    template = f"dash-{run}"
    await produce(kafka_bootstrap, _history(template))
    serve = ServeProcess(kafka_bootstrap, tmp_path, group_id=f"dash-{run}").start()
    try:
        counted = f"SELECT count() FROM events WHERE template_id = '{template}'"
        assert serve.wait_for(counted, 60, timeout_s=90) == 60
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(serve.url + "/")
            await page.wait_for_selector("#chart path.series", state="attached", timeout=30_000)
            categories = await page.eval_on_selector_all(
                "#chart path.series", "ps => ps.map(p => p.dataset.category)"
            )
            assert {"transient", "resource"} <= set(categories)
            await page.wait_for_function("document.body.dataset.feed === 'ready'", timeout=30_000)
            live = s.TaskFailed(
                task_id=f"live-{run}",
                template_id=template,
                operation_type="o",
                attempt=1,
                attempts=1,
                error=_error("validation"),
                source=SOURCE,
            )
            await produce(kafka_bootstrap, [live])
            await page.wait_for_selector(f"#feed div:has-text('live-{run}')", timeout=30_000)
            await page.wait_for_timeout(300)  # let the feed line paint before the picture
            shot = tmp_path / "dashboard.png"
            await page.screenshot(path=str(shot), full_page=True)
            await browser.close()
        assert shot.stat().st_size > 10_000
        if os.environ.get("ERRORFLOW_SAVE_SCREENSHOT"):
            shutil.copy(shot, ROOT / "docs" / "dashboard.png")
    finally:
        serve.stop()
