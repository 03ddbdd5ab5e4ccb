"""Run ``errorflow worker`` processes and read what they publish."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

import schemas as s
from tests.integration.process import ROOT, ChildProcess

FAST = {  # 1-second windows so a test sees many of them
    "ERRORFLOW_WORKER_TUMBLING_S": "1",
    "ERRORFLOW_WORKER_HOPPING_S": "5",
    "ERRORFLOW_WORKER_HOP_S": "1",
    "ERRORFLOW_WORKER_GRACE_S": "1",
    "ERRORFLOW_WORKER_MIN_HISTORY": "5",
    "ERRORFLOW_WORKER_HOLD_DOWN_S": "3",
    "ERRORFLOW_WORKER_MIN_RATE_ATTEMPTS": "10",
    "ERRORFLOW_WORKER_IDLE_CLOSE_S": "4",
    "ERRORFLOW_WORKER_TICK_S": "0.2",
    "ERRORFLOW_WORKER_METRICS_PORT": "0",  # tests that look at it pick a free port
}


class WorkerProcess(ChildProcess):
    def __init__(
        self,
        bootstrap: str,
        app_id: str,
        name: str,
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.env = {
            **os.environ,
            **FAST,
            "ERRORFLOW_LOG_LEVEL": "INFO",
            **(extra_env or {}),
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ERRORFLOW_WORKER_APP_ID": app_id,
            "ERRORFLOW_WORKER_NAME": name,
            "PYTHONPATH": str(ROOT),
        }
        self.log = log_dir / f"worker-{name}.log"

    def start(self) -> WorkerProcess:
        self.spawn(["worker"], self.env, self.log)
        return self

    async def ready(self, stages: tuple[str, ...], timeout_s: float = 60) -> None:
        """Until each stage has its partitions (and has pinned its start offsets)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log.read_text() if self.log.exists() else ""
            if all(f"errorflow.worker.assigned stage={name} " in text for name in stages):
                return
            assert self.proc is not None
            assert self.proc.poll() is None, text[-3000:]
            await asyncio.sleep(0.2)
        raise AssertionError(f"worker stages {stages} not ready in {timeout_s}s")


async def read_all(bootstrap: str, topic: str, *, timeout_ms: int = 1500) -> list[Any]:
    """Every committed record on ``topic`` (read_committed, from the beginning)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    records: list[Any] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=timeout_ms)
            if not batch:
                return records
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()


async def events_for(bootstrap: str, topic: str, service: str) -> list[s.Envelope]:
    out = []
    for record in await read_all(bootstrap, topic):
        event = s.decode(record.value)
        labels = getattr(event, "key", None) or getattr(event, "labels", {})
        if labels.get("service") == service:
            out.append(event)
    return out


async def windows_for(bootstrap: str, app_id: str, key: str) -> dict[int, dict[str, Any]]:
    """Closed 1-second tumbling windows of ``key`` by start (ms)."""
    rows = {}
    for record in await read_all(bootstrap, f"{app_id}-windows"):
        row = json.loads(record.value)
        if row["key"] == key and row["spec"].startswith("tumbling"):
            assert row["window_start_ms"] not in rows, "a window was reported twice"
            rows[row["window_start_ms"]] = row
    return rows


@contextlib.contextmanager
def running_worker(
    bootstrap: str, log_dir: Path, prefix: str, env: dict[str, str], stage: str
) -> Iterator[WorkerProcess]:
    """A worker process of a fresh app id, yielded once ``stage`` has its partitions."""
    app_id = f"{prefix}-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(bootstrap, app_id, "w1", log_dir, env).start()
    try:
        asyncio.run(worker.ready((stage,)))
        yield worker
    finally:
        worker.stop()
