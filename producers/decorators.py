"""``@with_error_handling``: a method becomes a task, optionally behind a breaker."""

from __future__ import annotations

import functools
import inspect
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["with_error_handling"]

R = TypeVar("R")
_IDENTITY = ("self", "cls", "task_id", "template_id")


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def with_error_handling(
    operation_type: str,
    service: str | None = None,
    *,
    template_id: str | None = None,
    max_attempts: int | None = None,
) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Awaitable[R]]]:
    """Run the decorated coroutine through ``wrap_task_execution``.

    ``task_id`` and ``template_id`` are taken from the call's arguments (a fresh task id
    when absent); the other JSON-serialisable arguments become ``task_data``. The handler
    is ``self._error_handler`` (or ``self.error_handler``), else the process default.
    With ``service``, every attempt goes through that service's circuit breaker.
    """

    def decorate(func: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        signature = inspect.signature(func)

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> R:
            from producers.dependencies import get_error_handler

            bound = signature.bind(*args, **kwargs)
            arguments = bound.arguments
            owner = arguments.get("self")
            handler = (
                getattr(owner, "_error_handler", None)
                or getattr(owner, "error_handler", None)
                or await get_error_handler()
            )
            task_data = {k: v for k, v in arguments.items() if k not in _IDENTITY and _jsonable(v)}

            async def attempt() -> R:
                if service is None:
                    return await func(*args, **kwargs)
                result: R = await handler.protect_external_call(service, func, *args, **kwargs)
                return result

            result: R = await handler.wrap_task_execution(
                task_id=str(arguments.get("task_id") or uuid.uuid4()),
                template_id=str(arguments.get("template_id") or template_id or func.__qualname__),
                operation_type=operation_type,
                task_data=task_data,
                execute_func=attempt,
                max_attempts=max_attempts,
                service=service,
            )
            return result

        return wrapper

    return decorate
