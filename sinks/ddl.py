"""DDL generated from :mod:`sinks.tables`: tables, the per-minute rollup, the poison view."""

from __future__ import annotations

import re

from sinks.tables import (
    ENVELOPE_CHECKS,
    ENVELOPE_COLUMNS,
    ENVELOPE_JSON,
    TABLES,
    TASK_TYPES,
    TableSpec,
)

__all__ = [
    "ROLLUP_DDL",
    "ROLLUP_SELECT",
    "ROLLUP_VIEW_DDL",
    "rollup_repair_sql",
    "poison_view_ddl",
    "positions_sql",
    "stored_offsets_sql",
    "table_ddl",
    "ttl_expression",
]

_FIELD = re.compile(r"\bj\.([a-z_0-9]+)(?:\.([a-z_0-9]+))?")


def _expr(expression: str) -> str:
    """``j.a.b`` → ``tupleElement(tupleElement(_j, 'a'), 'b')``."""

    def replace(match: re.Match[str]) -> str:
        out = f"tupleElement(_j, '{match.group(1)}')"
        if match.group(2):
            out = f"tupleElement({out}, '{match.group(2)}')"
        return out

    return _FIELD.sub(replace, expression)


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quoted(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _error_expr(spec: TableSpec) -> str:
    branches = ["NOT isValidJSON(payload)", "'record is not valid JSON'"]
    for condition, reason in (*ENVELOPE_CHECKS, *spec.checks):
        branches += [_expr(condition.format(task_types=_quoted(TASK_TYPES))), _literal(reason)]
    branches += [
        f"{_expr('j.type')} NOT IN {_quoted(spec.types)}",
        f"concat('type ', {_expr('j.type')}, ' does not belong in table {spec.name}')",
    ]
    return f"multiIf({', '.join(branches)}, '')"


def table_ddl(spec: TableSpec, database: str, ttl_days: int | None = None) -> str:
    json_type = f"Tuple({ENVELOPE_JSON}, {spec.json_fields})"
    columns = [
        "_topic LowCardinality(String)",
        "_partition UInt16",
        "_offset UInt64",
        "_ingested_at DateTime('UTC') DEFAULT now()",
        "payload String",
        f"_j {json_type} EPHEMERAL JSONExtract(payload, '{json_type}')",
        *(f"{name} {type_} DEFAULT {_expr(expr)}" for name, type_, expr in ENVELOPE_COLUMNS),
        *(f"{name} {type_} DEFAULT {_expr(expr)}" for name, type_, expr in spec.columns),
        f"_error String DEFAULT {_error_expr(spec)}",
    ]
    days = ttl_days or spec.ttl_days
    body = ",\n    ".join(columns)
    # Partitioned by ingestion month: every insert of the sink lands in one partition,
    # so it is atomic (one part) — the sink's exactly-once resume relies on that.
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{spec.name} (\n    {body}\n)\n"
        "ENGINE = MergeTree\n"
        "PARTITION BY toYYYYMM(_ingested_at)\n"
        f"ORDER BY {spec.order_by}\n"
        f"TTL {ttl_expression(days)}"
    )


def ttl_expression(days: int) -> str:
    """Retention by event time; rows without one (refused rows) by ingestion time."""
    return f"if(occurred_at = 0, _ingested_at, toDateTime(occurred_at)) + INTERVAL {int(days)} DAY"


# Attempts: each task attempt ends with exactly one of succeeded / attempt_failed /
# failed; each external call that reached its service with one call.completed. As in the
# stream worker (streams/facts.py): a rejected call never reached the service, whether or
# not a fallback then answered it; a failed call answered by a fallback is a failure.
_REJECTED = (
    "(outcome = 'rejected' OR (outcome = 'fallback' "
    "AND JSONExtractString(payload, 'fallback_reason') = 'rejected'))"
)
ROLLUP_SELECT = f"""
    SELECT
        toStartOfMinute(occurred_at) AS minute,
        if(type = 'call.completed', 'call', 'task') AS kind,
        service, template_id, category,
        countIf(type IN ('task.succeeded', 'task.attempt_failed', 'task.failed')
                OR (type = 'call.completed' AND NOT {_REJECTED})) AS attempts,
        countIf(type IN ('task.attempt_failed', 'task.failed')
                OR (type = 'call.completed' AND outcome != 'success' AND NOT {_REJECTED}))
            AS errors
    FROM {{db}}.events
    WHERE _error = ''
      AND type IN ('task.succeeded', 'task.attempt_failed', 'task.failed', 'call.completed')
    GROUP BY minute, kind, service, template_id, category
    """
ROLLUP_VIEW_DDL = (
    "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.events_per_minute_mv "
    "TO {db}.events_per_minute AS" + ROLLUP_SELECT
)


def rollup_repair_sql(database: str) -> tuple[str, str, str]:
    """(minutes touched by some offsets of one partition, delete those minutes from the
    rollup, rebuild them from ``events``): the materialized view's part is not atomic
    with the ``events`` part, so after a crash mid-flush the minutes of the offsets in
    doubt are recomputed from the rows actually stored."""
    minutes = (
        f"SELECT DISTINCT toStartOfMinute(occurred_at) FROM {database}.events "  # noqa: S608
        "WHERE _topic = {topic:String} AND _partition = {partition:UInt16} "
        "AND _offset BETWEEN {low:UInt64} AND {high:UInt64}"
    )
    where = "minute IN {minutes:Array(DateTime('UTC'))}"
    delete = f"ALTER TABLE {database}.events_per_minute DELETE WHERE {where}"
    rebuild = f"INSERT INTO {database}.events_per_minute " + ROLLUP_SELECT.replace(
        "{db}", database
    ).replace(
        "    GROUP BY",
        "      AND toStartOfMinute(occurred_at) IN {minutes:Array(DateTime('UTC'))}\n    GROUP BY",
    )
    return minutes, delete, rebuild


ROLLUP_DDL = (
    """
    CREATE TABLE IF NOT EXISTS {db}.events_per_minute (
        minute DateTime('UTC'),
        kind LowCardinality(String),
        service LowCardinality(String),
        template_id LowCardinality(String),
        category LowCardinality(String),
        attempts UInt64,
        errors UInt64
    ) ENGINE = SummingMergeTree
    PARTITION BY toYYYYMM(minute)
    ORDER BY (minute, kind, service, template_id, category)
    TTL minute + INTERVAL 400 DAY
    """,
    ROLLUP_VIEW_DDL,
)


def poison_view_ddl(database: str) -> str:
    """``poison``: undecodable records and rows ClickHouse refused, with reasons."""
    parts = [
        f"SELECT occurred_at AS received_at, source_topic, source_partition, source_offset, "
        f"reason, raw_base64 AS raw, 'poison.record' AS via FROM {database}.poison_records "
        "WHERE _error = ''"
    ]
    for spec in TABLES:
        parts.append(
            f"SELECT _ingested_at, _topic, toInt32(_partition), toInt64(_offset), _error, "
            f"base64Encode(payload), '{spec.name}' FROM {database}.{spec.name} WHERE _error != ''"
        )
    union = "\nUNION ALL\n".join(parts)
    return f"CREATE OR REPLACE VIEW {database}.poison AS\n{union}"


def positions_sql(database: str) -> str:
    """The highest stored offset per (topic, partition), over every table."""
    union = " UNION ALL ".join(
        f"SELECT _topic, _partition, max(_offset) AS o FROM {database}.{s.name} "
        "GROUP BY _topic, _partition"
        for s in TABLES
    )
    return f"SELECT _topic, _partition, max(o) FROM ({union}) GROUP BY _topic, _partition"


def stored_offsets_sql(database: str) -> str:
    """Offsets of one partition within [low, high] stored in any table (parameterised)."""
    union = " UNION ALL ".join(
        f"SELECT _offset FROM {database}.{s.name} WHERE _topic = {{topic:String}} "
        "AND _partition = {partition:UInt16} AND _offset BETWEEN {low:UInt64} AND {high:UInt64}"
        for s in TABLES
    )
    return f"SELECT DISTINCT _offset FROM ({union})"
