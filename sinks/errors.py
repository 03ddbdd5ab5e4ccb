"""The sinks package's exceptions."""

from __future__ import annotations

__all__ = ["ClickHouseUnavailable", "SinkError"]


class SinkError(Exception):
    """Root of every error raised by :mod:`sinks`."""


class ClickHouseUnavailable(SinkError):
    """ClickHouse could not be opened: a server that does not answer, or a chDB
    directory that another process owns (one process per chDB directory)."""
