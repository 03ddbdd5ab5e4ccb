"""The sinks package's exceptions."""

from __future__ import annotations

__all__ = ["DATA_ERROR_CODES", "ClickHouseUnavailable", "SinkError", "error_code", "is_data_error"]


class SinkError(Exception):
    """Root of every error raised by :mod:`sinks`."""


class ClickHouseUnavailable(SinkError):
    """ClickHouse could not be opened: a server that does not answer, or a chDB
    directory that another process owns (one process per chDB directory)."""


# ClickHouse error codes (src/Common/ErrorCodes.cpp) that say the *data* is at fault:
# retrying the same rows can never succeed, so they become poison rows with the reason.
# Every other code (READONLY 164, MEMORY_LIMIT_EXCEEDED 241, TOO_MANY_PARTS 252, network
# and timeouts, or no code at all) is treated as transient and retried with backoff.
DATA_ERROR_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        33,  # CANNOT_READ_ALL_DATA
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        395,  # FUNCTION_THROW_IF_VALUE_IS_NON_ZERO
    }
)


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code clickhouse-connect attached to ``exc``, if any."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None


def is_data_error(exc: BaseException) -> bool:
    return error_code(exc) in DATA_ERROR_CODES
