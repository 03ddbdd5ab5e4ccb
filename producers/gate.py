"""How many tasks a runner takes at once: open (no limit), throttled, or closed (draining
before a restart). Healing actions set it; ``wrap_task_execution`` passes through it."""

from __future__ import annotations

import asyncio

__all__ = ["TaskGate"]


class TaskGate:
    def __init__(self) -> None:
        self.limit: int | None = None  # None: as many as the runner starts
        self.closed = False
        self.running = 0
        self._changed: asyncio.Event | None = None

    @property
    def free(self) -> bool:
        return not self.closed and (self.limit is None or self.running < self.limit)

    async def enter(self) -> None:
        """Wait for a slot (at once when open: the hot path costs a comparison)."""
        while not self.free:
            if self._changed is None:
                self._changed = asyncio.Event()
            self._changed.clear()
            await self._changed.wait()
        self.running += 1

    def leave(self) -> None:
        self.running -= 1
        self._notify()

    def set(self, *, limit: int | None = None, closed: bool | None = None) -> None:
        self.limit = limit
        if closed is not None:
            self.closed = closed
        self._notify()

    async def drained(self, timeout_s: float) -> bool:
        """Until no task runs (True) or ``timeout_s`` passed (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.running and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return self.running == 0

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
