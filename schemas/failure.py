"""The ``error`` object carried inside task and call events."""

from __future__ import annotations

from schemas.envelope import WireModel
from schemas.vocabulary import Category, Severity

__all__ = ["MAX_MESSAGE_CHARS", "MAX_STACK_CHARS", "Category", "ErrorInfo", "Severity"]


# Sizes the SDK truncates to, so one exploding traceback cannot bloat every consumer.
MAX_MESSAGE_CHARS = 2_000
MAX_STACK_CHARS = 8_000


class ErrorInfo(WireModel):
    """A classified error: what happened, which rule said so, and whether to retry."""

    category: Category
    error_type: str
    message: str
    fingerprint: str
    severity: Severity
    retryable: bool
    rule: str
    service: str | None = None
    stack: str | None = None
