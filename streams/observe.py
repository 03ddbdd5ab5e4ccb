"""Seeing a running worker: Prometheus metrics and its live state, over plain HTTP.

``ERRORFLOW_WORKER_METRICS_PORT`` (default 9464; 0 turns it off) serves, on 127.0.0.1
unless ``ERRORFLOW_WORKER_METRICS_HOST`` says otherwise:

- ``GET /metrics`` — Prometheus text: records consumed and poisoned, outputs, transaction
  aborts, assigned partitions, lag and state entries per stage, late counts;
- ``GET /state`` — JSON of what the engines hold right now: the fleet breaker table per
  service, tasks waiting (retry backoff, parked for a resource, unclaimed retries) and
  the open windows per key. ``errorflow inspect`` prints it.

Read-only; no request changes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.app import WorkerApp
    from streams.engine import EngineStage

__all__ = ["metrics_text", "serve_observer", "state_of"]

log = logging.getLogger("errorflow.worker.observe")


def _lag(stage: EngineStage[Any]) -> int:
    consumer = stage._consumer
    if consumer is None:
        return 0
    lag = 0
    for tp in list(stage.engines):
        end = consumer.last_stable_offset(tp) or consumer.highwater(tp)
        if end is not None:
            lag += max(0, end - stage._next.get(tp, end))
    return lag


def metrics_text(app: WorkerApp) -> str:
    out: list[str] = []

    def gauge(name: str, value: float, help_: str, **labels: str) -> None:
        if f"# HELP errorflow_worker_{name} " not in "".join(out[-50:]):
            out.append(f"# HELP errorflow_worker_{name} {help_}")
            out.append(f"# TYPE errorflow_worker_{name} gauge")
        text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        out.append(
            f"errorflow_worker_{name}{{{text}}} {value}"
            if text
            else f"errorflow_worker_{name} {value}"
        )

    gauge("consumed_total", app.ingest.consumed, "records read from task and call events")
    gauge("poisoned_total", app.ingest.poisoned, "records sent to errorflow.poison")
    gauge(
        "late_total", app.detection.late_dropped(), "counts that arrived after their window closed"
    )
    for stage in app.stages:
        gauge("emitted_total", stage.emitted, "outputs committed", stage=stage.name)
        gauge(
            "aborts_total", stage.aborts, "failed checkpoints (stage restarted)", stage=stage.name
        )
        gauge("partitions", len(stage.engines), "assigned input partitions", stage=stage.name)
        gauge("lag", _lag(stage), "records not yet read", stage=stage.name)
    for name, size in _state_sizes(app).items():
        gauge("state_entries", size, "entries held in memory", stage=name)
    return "\n".join(out) + "\n"


def _state_sizes(app: WorkerApp) -> dict[str, int]:
    return {
        "detect": sum(
            len(e.tumbling.open) + len(e.hopping.open) for e in app.detection.engines.values()
        ),
        "breakers": sum(len(b.breakers) for b in app.breakers.engines.values()),
        "recovery": sum(len(r.tasks) for r in app.recovery.engines.values()),
    }


def state_of(app: WorkerApp) -> dict[str, Any]:
    """What the engines hold now (JSON-able)."""
    breakers = {
        service: {
            "state": b.state,
            "since_ms": b.since_ms,
            "consecutive_failures": b.consecutive,
            "failing_workers": sorted(b.failing_workers),
            "window_calls": b.window_calls,
            "window_failures": b.window_failures,
        }
        for board in app.breakers.engines.values()
        for service, b in board.breakers.items()
    }
    waiting = [
        {"task_id": record.task_id, "template_id": record.template_id, **record.pending}
        for engine in app.recovery.engines.values()
        for record in engine.tasks.values()
        if record.pending is not None
    ]
    windows: dict[str, int] = {}
    for engine in app.detection.engines.values():
        for key, _start in engine.tumbling.open:
            windows[key] = windows.get(key, 0) + 1
    return {
        "worker": app.settings.name,
        "breakers": breakers,
        "waiting_tasks": waiting,
        "open_windows": windows,
        "state_entries": _state_sizes(app),
    }


async def serve_observer(app: WorkerApp, host: str, port: int, stop: asyncio.Event) -> None:
    """A tiny HTTP/1.0 server for /metrics and /state until ``stop``."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), 5)).decode("latin-1")
            path = line.split(" ")[1] if line.count(" ") >= 2 else "/"
            if path.startswith("/metrics"):
                body, kind, status = metrics_text(app).encode(), "text/plain; version=0.0.4", 200
            elif path.startswith("/state"):
                body, kind, status = json.dumps(state_of(app)).encode(), "application/json", 200
            else:
                body, kind, status = b"try /metrics or /state\n", "text/plain", 404
            writer.write(
                f"HTTP/1.0 {status} OK\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except Exception as exc:  # noqa: BLE001 - a bad request must not hurt the worker
            log.debug("errorflow.worker.observe_failed error=%r", exc)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    try:
        server = await asyncio.start_server(answer, host, port)
    except OSError as exc:
        log.warning(
            "errorflow.worker.metrics_unavailable host=%s port=%d error=%s", host, port, exc
        )
        return
    log.info("errorflow.worker.metrics url=http://%s:%d/metrics", host, port)
    async with server:
        await stop.wait()
