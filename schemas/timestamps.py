"""UTC timestamps as the wire contract writes them: RFC 3339, milliseconds, ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, PlainSerializer, WithJsonSchema

__all__ = ["UtcDateTime", "format_utc", "utc_now"]


def _to_utc(value: datetime) -> datetime:
    # A naive datetime is ambiguous (local time? UTC?); refusing it is the only safe answer.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "timestamp has no UTC offset; RFC 3339 with an offset (e.g. 'Z') is required"
        )
    return value.astimezone(UTC)


def format_utc(value: datetime) -> str:
    """Render ``value`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def utc_now() -> datetime:
    """The current time in UTC, truncated to the milliseconds the wire keeps."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


UtcDateTime = Annotated[
    datetime,
    AfterValidator(_to_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
