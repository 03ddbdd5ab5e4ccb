"""Turning exceptions into the contract's ``error`` object."""

from __future__ import annotations

import contextlib
import re
import traceback
from typing import Any

from producers.classify import Classification
from producers.fingerprint import fingerprint
from schemas import ErrorInfo, ResourceNeed
from schemas.failure import MAX_MESSAGE_CHARS, MAX_STACK_CHARS

__all__ = ["CANCELLED", "annotate", "error_info", "resource_need"]

#: How a task that was cancelled (or interrupted by KeyboardInterrupt/SystemExit) is
#: reported: a final ``task.failed`` so recovery and compensation follow. Permanent: it
#: goes to the dead-letter queue (replayable) rather than being retried behind the back
#: of whoever cancelled it.
CANCELLED = Classification("permanent", "builtin:cancelled", "medium", retryable=False)

_RESOURCE_KINDS = (
    (re.compile(r"gpu|cuda", re.I), "gpu"),
    (re.compile(r"disk|space|ENOSPC", re.I), "disk"),
    (re.compile(r"memory|oom", re.I), "memory"),
)


def error_info(exc: BaseException, result: Classification, service: str | None) -> ErrorInfo:
    error_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
    stack = "".join(traceback.format_exception(exc, limit=20))
    return ErrorInfo(
        category=result.category,
        error_type=error_type,
        message=str(exc)[:MAX_MESSAGE_CHARS],
        fingerprint=fingerprint(exc, error_type),
        severity=result.severity,
        retryable=result.retryable,
        rule=result.rule,
        service=service,
        stack=stack[-MAX_STACK_CHARS:],
    )


def resource_need(exc: BaseException) -> ResourceNeed:
    """What a resource error waits for: the exception's ``resource_kind`` or a guess."""
    kind: Any = getattr(exc, "resource_kind", None)
    if not isinstance(kind, str):
        text = f"{type(exc).__name__} {exc}"
        kind = next((k for rx, k in _RESOURCE_KINDS if rx.search(text)), "gpu")
    amount = getattr(exc, "amount", 1)
    return ResourceNeed(kind=kind, amount=amount if isinstance(amount, int | float) else 1)


def annotate(exc: BaseException, info: ErrorInfo, outcome: str) -> None:
    """Attach the classification to the original exception before it is re-raised."""
    with contextlib.suppress(AttributeError, TypeError):
        exc.errorflow_error = info  # type: ignore[attr-defined]
    exc.add_note(
        f"errorflow: {info.category} (rule {info.rule}, fingerprint {info.fingerprint}); {outcome}"
    )
