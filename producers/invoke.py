"""Calling user functions: coroutines are awaited, sync functions run off the loop."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["call_user_function", "is_coroutine_function", "takes_argument"]

_arity: dict[object, bool] = {}


def takes_argument(func: Callable[..., Any]) -> bool:
    """Whether ``func`` accepts one positional argument (cached per code object)."""
    key = getattr(func, "__code__", None) or func
    known = _arity.get(key)
    if known is None:
        try:
            params = inspect.signature(func).parameters.values()
        except (TypeError, ValueError):
            known = True
        else:
            known = any(
                p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                for p in params
            )
        if len(_arity) < 10_000:
            _arity[key] = known
    return known


def is_coroutine_function(func: Callable[..., Any]) -> bool:
    """Cheap check for plain ``async def`` functions and bound methods (a code flag)."""
    code = getattr(func, "__code__", None)
    return code is not None and bool(code.co_flags & inspect.CO_COROUTINE)


def _is_async(func: Callable[..., Any]) -> bool:
    if is_coroutine_function(func):
        return True
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - async callable objects
    )


async def call_user_function(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Await ``func(*args, **kwargs)``; a sync function runs in a worker thread so a
    blocking call never stalls the event loop. An awaitable result is awaited."""
    if _is_async(func):
        return await func(*args, **kwargs)
    result = await asyncio.to_thread(func, *args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result
