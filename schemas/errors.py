"""The schemas package's exceptions."""

from __future__ import annotations

__all__ = ["DecodeError", "SchemaError"]


class SchemaError(Exception):
    """Root of every error raised by :mod:`schemas`."""


class DecodeError(SchemaError, ValueError):
    """Raw bytes are not a record errorflow can read.

    Raised by :func:`schemas.decode` for invalid JSON, a value that is not an object,
    a missing or unknown ``type``, a ``schema_version`` newer than this reader, or a
    missing/invalid field. ``reason`` is the human-readable cause (also the message);
    ``type`` is the record's type when it could be read.
    """

    def __init__(self, reason: str, *, type: str | None = None) -> None:  # noqa: A002
        super().__init__(reason)
        self.reason = reason
        self.type = type
