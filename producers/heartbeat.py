"""Optional ``worker.heartbeat`` publishing, with probes for what only the runner knows."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producers.logs import sdk_logger
from schemas import GpuStatus, ModelStatus, WorkerHeartbeat

if TYPE_CHECKING:
    from producers.handler import ErrorHandler

__all__ = ["HeartbeatEmitter", "HeartbeatProbes"]

log = sdk_logger("errorflow.heartbeat")


class HeartbeatProbes:
    """Callables the runner registers: queue depth, GPU status, model checksums."""

    def __init__(self) -> None:
        self.queue_depth: Callable[[], int] = lambda: 0
        self.gpu: Callable[[], list[GpuStatus]] | None = None
        self.models: Callable[[], list[ModelStatus]] | None = None


def _rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _with_load_errors(models: list[ModelStatus], errors: dict[str, int]) -> list[ModelStatus]:
    """The probe's models with their failed-load counts; models only known by their
    failures are added with their checksum unknown."""
    out = [m.model_copy(update={"load_errors": errors.get(m.name, m.load_errors)}) for m in models]
    known = {m.name for m in models}
    out += [ModelStatus(name=n, load_errors=c) for n, c in sorted(errors.items()) if n not in known]
    return out


class HeartbeatEmitter:
    def __init__(self, handler: ErrorHandler, *, interval_s: float, disk_path: str = ".") -> None:
        self.handler = handler
        self.interval_s = interval_s
        self.disk_path = disk_path
        self.probes = HeartbeatProbes()
        self._task: asyncio.Task[None] | None = None
        self._last_cpu = (time.monotonic(), sum(os.times()[:2]))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="errorflow-heartbeat")

    async def stop(self) -> None:
        """Stop beating; the last beat says ``stopping`` so self-healing does not take
        a worker shut down on purpose for an unresponsive one."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            try:
                self.beat(stopping=True)
            except Exception as exc:  # noqa: BLE001 - closing goes on
                log.warning("errorflow.heartbeat.last_beat_failed", extra={"error": repr(exc)})

    def _cpu_percent(self) -> float:
        now, cpu = time.monotonic(), sum(os.times()[:2])
        then, cpu_then = self._last_cpu
        self._last_cpu = (now, cpu)
        return 100.0 * (cpu - cpu_then) / max(now - then, 1e-6)

    def beat(self, *, stopping: bool = False) -> None:
        disk = shutil.disk_usage(self.disk_path)
        fields: dict[str, Any] = {
            "worker_id": self.handler.source.worker_id,
            "interval_s": self.interval_s,
            "cpu_percent": round(self._cpu_percent(), 2),
            "memory_rss_bytes": _rss_bytes(),
            "disk_free_bytes": disk.free,
            "disk_total_bytes": disk.total,
            "queue_depth": self.probes.queue_depth(),
            "in_flight": self.handler.in_flight,
        }
        if self.probes.gpu is not None:
            fields["gpu"] = self.probes.gpu()
        models = list(self.probes.models()) if self.probes.models is not None else []
        if self.handler.model_load_errors:
            models = _with_load_errors(models, self.handler.model_load_errors)
        if models or self.probes.models is not None:
            fields["models"] = models
        if stopping:
            fields["stopping"] = True
        commands = self.handler.commands
        if commands is not None:
            fields["command_lag"] = commands.lag()
        self.handler.emit(WorkerHeartbeat, **fields)

    async def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a broken probe must not stop heartbeats
                log.warning("errorflow.heartbeat.probe_failed", extra={"error": repr(exc)})
            await asyncio.sleep(self.interval_s)
