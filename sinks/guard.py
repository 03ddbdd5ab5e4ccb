"""User SQL, only over errorflow's own data: judged by ClickHouse's own parser.

``errorflow sql`` and ``POST /api/v1/sql`` accept one ``SELECT`` (``WITH`` and
``UNION`` included) that reads errorflow's tables and nothing else. The query is parsed
by ClickHouse (``EXPLAIN AST``, which parses without executing), and the tree is
checked against an allow-list: every table is one of errorflow's (bare names resolve in
the ``errorflow`` database, or are the query's own CTEs), no table function (``file``,
``url``, ``remote``, ``s3``...), no function that reads the server's files or sleeps,
no ``SETTINGS``, ``FORMAT`` or ``INTO OUTFILE``. It then runs on a query connection of
its own (never the sink's session) with ``readonly=1`` and limits on time, rows, bytes
and memory (:data:`LIMITS`). chDB has no users or grants to check against, so this
parser-level allow-list is the guard on both backends.
"""

from __future__ import annotations

import re
from typing import Any

from sinks.errors import SinkError
from sinks.tables import TABLES

__all__ = ["LIMITS", "SqlRefused", "check_sql"]

#: Per-query settings of every user query (readonly=1 also forbids changing them).
LIMITS: dict[str, Any] = {
    "readonly": 1,
    "max_execution_time": 10,
    "timeout_overflow_mode": "throw",
    "max_result_rows": 100_000,
    "max_result_bytes": 64 << 20,
    "result_overflow_mode": "throw",
    "max_memory_usage": 1 << 30,
    "max_rows_to_read": 500_000_000,
}

_TABLES = frozenset(
    {spec.name for spec in TABLES}
    | {"events_per_minute", "poison", "schema_versions", "events_per_minute_mv"}
)
# Scalar functions that reach outside errorflow's data or hold a thread.
_FUNCTIONS = frozenset(
    {
        "file",
        "sleep",
        "sleepeachrow",
        "filesystemavailable",
        "filesystemcapacity",
        "filesystemunreserved",
        "getsetting",
        "dictget",
        "joinget",
        "getmacro",
        "executable",
        "url",
    }
)
_OTHER_DATABASES = frozenset(
    {"system", "information_schema", "default", "_temporary_and_external_tables"}
)
_NODE = re.compile(r"^( *)(\w+)(?: (\S+))?")


class SqlRefused(SinkError):
    """The query is not a read of errorflow's data; ``reason`` says what was found."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_sql(ast_lines: list[str], database: str = "errorflow") -> None:
    """Raise :class:`SqlRefused` unless ``ast_lines`` (``EXPLAIN AST`` of the query, one
    node per line, indented by depth) is a plain SELECT over errorflow's tables."""
    if not ast_lines or not ast_lines[0].startswith("SelectWithUnionQuery"):
        kind = _NODE.match(ast_lines[0]).group(2) if ast_lines else "nothing"  # type: ignore[union-attr]
        raise SqlRefused(f"only SELECT queries are allowed (this is {kind})")
    root_children = [line for line in ast_lines if _depth(line) == 1]
    # EXPLAIN adds one child (its output format); anything more is SETTINGS, FORMAT or
    # INTO OUTFILE of the user's own.
    if len(root_children) > 2:
        raise SqlRefused("SETTINGS, FORMAT and INTO OUTFILE are not allowed")
    for i, line in enumerate(ast_lines):
        match = _NODE.match(line)
        if match is None:
            continue
        node, arg = match.group(2), match.group(3) or ""
        if node == "SetQuery" or node.startswith("Set"):
            raise SqlRefused("SETTINGS are not allowed")
        if node == "TableExpression":
            _check_table(ast_lines, i, database)
        if node == "Function" and arg.lower() in _FUNCTIONS:
            raise SqlRefused(f"function {arg}() is not allowed")
        # `x IN system.tables` names a table outside a FROM: no other database, anywhere.
        if node == "Identifier" and arg.split(".")[0].strip('`"').lower() in _OTHER_DATABASES:
            raise SqlRefused(f"{arg} is not one of errorflow's tables")


def _depth(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _check_table(lines: list[str], at: int, database: str) -> None:
    """The node under a TableExpression: a table of ours, a subquery, or refused."""
    below = lines[at + 1] if at + 1 < len(lines) else ""
    match = _NODE.match(below)
    node, name = (match.group(2), match.group(3) or "") if match else ("", "")
    if node == "Subquery":
        return
    if node == "Function":
        raise SqlRefused(f"table function {name}() is not allowed")
    if node != "TableIdentifier":
        raise SqlRefused(f"unexpected table expression {node or below.strip()!r}")
    if "." in name:
        db, _, table = name.partition(".")
        if db.strip('`"') != database or table.strip('`"') not in _TABLES:
            raise SqlRefused(f"table {name} is not one of errorflow's")
    # A bare name is a CTE of the query or a table of the query connection's default
    # database (errorflow): it cannot reach another database.
