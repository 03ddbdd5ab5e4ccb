"""``get_error_handler()``: the process's default handler, configured from the environment."""

from __future__ import annotations

import asyncio

from producers.config import SDKConfig
from producers.handler import ErrorHandler

__all__ = ["get_error_handler", "reset_error_handler"]

_handler: ErrorHandler | None = None
_lock: asyncio.Lock | None = None


async def get_error_handler(config: SDKConfig | None = None) -> ErrorHandler:
    """The started default handler; ``config`` applies to the first call only (later
    calls with a different config raise, rather than silently ignoring it)."""
    global _handler, _lock
    if _lock is None:
        _lock = asyncio.Lock()
    async with _lock:
        if _handler is None:
            _handler = await ErrorHandler(config or SDKConfig()).start()
        elif config is not None and config != _handler.config:
            raise RuntimeError(
                "the default error handler is already configured differently; "
                "call reset_error_handler() first or build an ErrorHandler"
            )
        return _handler


async def reset_error_handler() -> None:
    """Close and forget the default handler (tests, re-configuration)."""
    global _handler, _lock
    if _handler is not None:
        await _handler.close()
    _handler = None
    _lock = None
