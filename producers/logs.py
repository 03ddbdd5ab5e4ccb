"""The SDK's log lines: they carry their details and do not flood.

A runner whose broker is gone for 40 s once wrote ~50,000 lines while its real problems
were lost in them. So every SDK logger (:func:`sdk_logger`) gets a filter that

- renders ``extra={...}`` fields into the line (``key=value``), whatever formatter the
  application configured — a line says which template, path, table or error;
- lets through at most :data:`BURST` lines per message per :data:`WINDOW_S` seconds and
  says how many it held back in the next line it lets through.

The clock is injectable for tests; nothing here configures the root logger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["BURST", "WINDOW_S", "RateLimit", "sdk_logger"]

BURST = 5
WINDOW_S = 60.0
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RateLimit(logging.Filter):
    """Per (logger, message template): ``burst`` lines per ``window_s``, then a count."""

    def __init__(
        self,
        *,
        burst: int = BURST,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[tuple[str, str], list[float]] = {}  # key → [window start, n, held]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        state = self._seen.get(key)
        if state is None or now - state[0] >= self.window_s:
            held = int(state[2]) if state else 0
            state = self._seen[key] = [now, 0, 0]
            if held:
                record.msg = f"{record.msg} (held back {held} similar in {self.window_s:.0f}s)"
        state[1] += 1
        if state[1] > self.burst:
            state[2] += 1
            return False
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if extras:
            rendered = " ".join(f"{k}={v}" for k, v in extras.items())
            record.msg = f"{record.msg} {rendered}"
            for name in extras:  # rendered once, even if another handler sees the record
                delattr(record, name)
        return True


def sdk_logger(name: str) -> logging.Logger:
    """The logger ``name`` with the SDK's filter attached once."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RateLimit) for f in logger.filters):
        logger.addFilter(RateLimit())
    return logger
