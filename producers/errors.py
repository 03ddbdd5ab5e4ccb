"""The SDK's exceptions, and base classes that carry a category for user errors.

Subclass :class:`TransientError`, :class:`ResourceError`, :class:`ValidationError` or
:class:`PermanentError` (or set ``errorflow_category`` on any exception) and the
classifier uses that category before any other rule — the cheap, explicit hook
aiokafka uses with ``retriable = True``.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CategorizedError",
    "CircuitOpenError",
    "ErrorflowError",
    "PermanentError",
    "ResourceError",
    "TransientError",
    "ValidationError",
]


class ErrorflowError(Exception):
    """Root of the SDK's own errors."""


class CategorizedError(Exception):
    """An exception that says its own category (and optionally severity and resource)."""

    errorflow_category: ClassVar[str]
    errorflow_severity: ClassVar[str | None] = None


class TransientError(CategorizedError):
    errorflow_category = "transient"


class ResourceError(CategorizedError):
    """A missing resource; ``resource_kind`` (e.g. ``"gpu"``) tells the streams what to wait for."""

    errorflow_category = "resource"

    def __init__(self, message: str = "", *, resource_kind: str = "gpu", amount: float = 1) -> None:
        super().__init__(message)
        self.resource_kind = resource_kind
        self.amount = amount


class ValidationError(CategorizedError):
    """Invalid input: never retried, the user is told."""

    errorflow_category = "validation"


class PermanentError(CategorizedError):
    errorflow_category = "permanent"


class CircuitOpenError(ErrorflowError, TransientError):
    """The breaker for ``service`` is open; ``retry_after`` is when it may admit a probe."""

    def __init__(self, service: str, retry_after: float, *, source: str = "local") -> None:
        super().__init__(
            f"circuit for {service!r} is open ({source}); retry after {retry_after:.1f}s"
        )
        self.service = service
        self.retry_after = retry_after
        self.source = source
