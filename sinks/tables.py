"""The ClickHouse tables the sink writes, declared once: routing, columns and DDL.

Every table stores the record exactly as it came (``payload``) plus where it came from
(``_topic``, ``_partition``, ``_offset``). Typed columns are computed by ClickHouse at
insert time from one JSON parse of the payload (an EPHEMERAL tuple column), so the
sink's Python side only moves bytes. ``_error`` is empty for a valid record and says
why otherwise; such rows stay out of every query and rollup and appear in the
``poison`` view with their reason.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ENVELOPE_CHECKS",
    "ENVELOPE_COLUMNS",
    "ENVELOPE_JSON",
    "TABLES",
    "TASK_TYPES",
    "TableSpec",
    "table_for_type",
]

# Envelope fields every record carries (DESIGN.md): parsed for every table.
ENVELOPE_JSON = (
    "event_id String, type String, schema_version Int64, occurred_at String, "
    "source Tuple(runner_id String, worker_id String, host String), "
    "trace Tuple(trace_id String, span_id String)"
)
_ERROR_JSON = (
    "error Tuple(category String, error_type String, message String, fingerprint String, "
    "severity String, retryable Bool, rule String, service String)"
)
ENVELOPE_COLUMNS = (
    ("event_id", "String", "j.event_id"),
    ("type", "LowCardinality(String)", "j.type"),
    (
        "occurred_at",
        "DateTime64(3, 'UTC')",
        "parseDateTime64BestEffortOrZero(j.occurred_at, 3, 'UTC')",
    ),
    ("runner_id", "LowCardinality(String)", "j.source.runner_id"),
    ("source_worker_id", "LowCardinality(String)", "j.source.worker_id"),
    ("host", "LowCardinality(String)", "j.source.host"),
    ("trace_id", "String", "j.trace.trace_id"),
    ("span_id", "String", "j.trace.span_id"),
)
_ERROR_COLUMNS = (
    ("category", "LowCardinality(String)", "j.error.category"),
    ("error_type", "LowCardinality(String)", "j.error.error_type"),
    ("fingerprint", "String", "j.error.fingerprint"),
    ("severity", "LowCardinality(String)", "j.error.severity"),
    ("message", "String", "j.error.message"),
    ("rule", "LowCardinality(String)", "j.error.rule"),
    ("retryable", "Bool", "j.error.retryable"),
)
# (condition in terms of `j`, reason) for checks every table makes, in order.
ENVELOPE_CHECKS = (
    ("j.type = ''", "field 'type' is missing"),
    ("j.schema_version > 1", "schema_version is newer than this reader understands (up to 1)"),
    ("j.schema_version < 1", "envelope field schema_version missing or below 1"),
    ("j.event_id = ''", "envelope field event_id missing"),
    (
        "parseDateTime64BestEffortOrNull(j.occurred_at, 3, 'UTC') IS NULL",
        "occurred_at missing or not an RFC 3339 timestamp",
    ),
    ("j.source.runner_id = ''", "envelope field source missing"),
)


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One table: which record types it stores and how its columns come from JSON."""

    name: str
    types: tuple[str, ...]
    json_fields: str
    columns: tuple[tuple[str, str, str], ...]
    checks: tuple[tuple[str, str], ...]
    order_by: str
    ttl_days: int


TASK_TYPES = (
    "task.started",
    "operation.recorded",
    "task.attempt_failed",
    "task.succeeded",
    "task.failed",
)

TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "events",
        (*TASK_TYPES, "compensation.completed", "compensation.failed", "call.completed"),
        "task_id String, template_id String, operation_type String, service String, "
        "attempt Int64, attempts Int64, outcome String, duration_ms Float64, will_retry Bool, "
        "retry_delay_s Float64, operation_id String, operation_kind String, command_id String, "
        "resource Tuple(kind String, amount Float64), " + _ERROR_JSON,
        (
            ("task_id", "String", "j.task_id"),
            ("template_id", "LowCardinality(String)", "j.template_id"),
            ("operation_type", "LowCardinality(String)", "j.operation_type"),
            (
                "service",
                "LowCardinality(String)",
                "if(j.service != '', j.service, j.error.service)",
            ),
            ("attempt", "UInt16", "toUInt16(least(greatest(j.attempt, 0), 65535))"),
            ("attempts", "UInt16", "toUInt16(least(greatest(j.attempts, 0), 65535))"),
            ("outcome", "LowCardinality(String)", "j.outcome"),
            ("duration_ms", "Float64", "j.duration_ms"),
            ("will_retry", "Bool", "j.will_retry"),
            ("retry_delay_s", "Float64", "j.retry_delay_s"),
            ("operation_id", "String", "j.operation_id"),
            ("operation_kind", "LowCardinality(String)", "j.operation_kind"),
            ("command_id", "String", "j.command_id"),
            ("resource_kind", "LowCardinality(String)", "j.resource.kind"),
            *_ERROR_COLUMNS,
        ),
        (
            ("j.type IN {task_types} AND j.task_id = ''", "field task_id missing"),
            ("j.type IN {task_types} AND j.template_id = ''", "field template_id missing"),
            (
                "j.type IN {task_types} AND NOT (j.attempt BETWEEN 1 AND 65535)",
                "attempt out of range (1..65535)",
            ),
            (
                "j.type = 'task.failed' AND NOT (j.attempts BETWEEN 1 AND 65535)",
                "attempts out of range (1..65535)",
            ),
            (
                "j.type IN ('task.attempt_failed', 'task.failed') AND j.error.category = ''",
                "field error missing",
            ),
            ("j.type = 'call.completed' AND j.service = ''", "field service missing"),
            (
                "j.type = 'call.completed' AND j.outcome NOT IN "
                "('success', 'failure', 'timeout', 'rejected', 'fallback')",
                "outcome is not a known value",
            ),
            ("j.duration_ms < 0 OR NOT isFinite(j.duration_ms)", "duration_ms out of range"),
            (
                "j.type IN ('compensation.completed', 'compensation.failed') AND j.command_id = ''",
                "field command_id missing",
            ),
        ),
        "(occurred_at, type, event_id)",
        90,
    ),
    TableSpec(
        "commands",
        (
            "recovery.retry",
            "recovery.queued",
            "recovery.dead_lettered",
            "recovery.fail_fast",
            "compensation.requested",
            "healing.action",
        ),
        "command_id String, causation_id String, task_id String, template_id String, "
        "operation_type String, attempt Int64, not_before String, expires_at String, "
        "reason String, resource_kind String, notification String, operation_id String, "
        "operation_kind String, step Int64, total_steps Int64, worker_id String, action String",
        (
            ("command_id", "String", "j.command_id"),
            ("causation_id", "String", "j.causation_id"),
            ("task_id", "String", "j.task_id"),
            ("template_id", "LowCardinality(String)", "j.template_id"),
            ("operation_type", "LowCardinality(String)", "j.operation_type"),
            ("attempt", "UInt16", "toUInt16(least(greatest(j.attempt, 0), 65535))"),
            (
                "not_before",
                "Nullable(DateTime64(3, 'UTC'))",
                "parseDateTime64BestEffortOrNull(j.not_before, 3, 'UTC')",
            ),
            ("reason", "String", "j.reason"),
            ("resource_kind", "LowCardinality(String)", "j.resource_kind"),
            ("notification", "String", "j.notification"),
            ("operation_id", "String", "j.operation_id"),
            ("operation_kind", "LowCardinality(String)", "j.operation_kind"),
            ("step", "UInt16", "toUInt16(least(greatest(j.step, 0), 65535))"),
            ("total_steps", "UInt16", "toUInt16(least(greatest(j.total_steps, 0), 65535))"),
            ("worker_id", "LowCardinality(String)", "j.worker_id"),
            ("action", "LowCardinality(String)", "j.action"),
        ),
        (
            ("j.command_id = ''", "field command_id missing"),
            ("j.causation_id = ''", "field causation_id missing"),
            ("j.type != 'healing.action' AND j.task_id = ''", "field task_id missing"),
        ),
        "(occurred_at, type, command_id)",
        90,
    ),
    TableSpec(
        "breaker_states",
        ("breaker.state",),
        "service String, state String, since String, reason String, failure_count Int64, "
        "failure_rate Nullable(Float64), calls Int64, workers_failing Nullable(Int64)",
        (
            ("service", "LowCardinality(String)", "j.service"),
            ("state", "LowCardinality(String)", "j.state"),
            ("since", "DateTime64(3, 'UTC')", "parseDateTime64BestEffortOrZero(j.since, 3, 'UTC')"),
            ("reason", "String", "j.reason"),
            (
                "failure_count",
                "UInt32",
                "toUInt32(least(greatest(j.failure_count, 0), 4294967295))",
            ),
            ("failure_rate", "Nullable(Float64)", "j.failure_rate"),
            ("calls", "UInt32", "toUInt32(least(greatest(j.calls, 0), 4294967295))"),
            ("workers_failing", "Nullable(UInt32)", "CAST(j.workers_failing AS Nullable(UInt32))"),
        ),
        (
            ("j.service = ''", "field service missing"),
            (
                "j.state NOT IN ('closed', 'open', 'half_open')",
                "state is not closed/open/half_open",
            ),
        ),
        "(service, occurred_at, event_id)",
        90,
    ),
    TableSpec(
        "control",
        ("breaker.reset", "breaker.config", "alerts.thresholds"),
        "service String, failure_threshold Nullable(Int64), recovery_timeout_s Nullable(Float64), "
        "success_threshold Nullable(Int64), error_rate Nullable(Float64), "
        "specific_error_count Nullable(Int64), recovery_failure_rate Nullable(Float64)",
        (
            ("service", "LowCardinality(String)", "j.service"),
            ("failure_threshold", "Nullable(Int64)", "j.failure_threshold"),
            ("recovery_timeout_s", "Nullable(Float64)", "j.recovery_timeout_s"),
            ("success_threshold", "Nullable(Int64)", "j.success_threshold"),
            ("error_rate", "Nullable(Float64)", "j.error_rate"),
            ("specific_error_count", "Nullable(Int64)", "j.specific_error_count"),
            ("recovery_failure_rate", "Nullable(Float64)", "j.recovery_failure_rate"),
        ),
        (
            (
                "j.type IN ('breaker.reset', 'breaker.config') AND j.service = ''",
                "field service missing",
            ),
        ),
        "(occurred_at, type, event_id)",
        365,
    ),
    TableSpec(
        "anomalies",
        ("anomaly.detected",),
        "kind String, key Map(String, String), value Float64, baseline Float64, spread Float64, "
        "score Float64, window_start String, window_end String",
        (
            ("kind", "LowCardinality(String)", "j.kind"),
            ("key", "Map(LowCardinality(String), String)", "j.key"),
            ("value", "Float64", "j.value"),
            ("baseline", "Float64", "j.baseline"),
            ("spread", "Float64", "j.spread"),
            ("score", "Float64", "j.score"),
            (
                "window_start",
                "DateTime64(3, 'UTC')",
                "parseDateTime64BestEffortOrZero(j.window_start, 3, 'UTC')",
            ),
            (
                "window_end",
                "DateTime64(3, 'UTC')",
                "parseDateTime64BestEffortOrZero(j.window_end, 3, 'UTC')",
            ),
        ),
        (("j.kind = ''", "field kind missing"),),
        "(occurred_at, kind, event_id)",
        90,
    ),
    TableSpec(
        "alerts",
        ("alert.firing", "alert.resolved"),
        "alert_id String, name String, severity String, labels Map(String, String), "
        "value Float64, threshold Float64, summary String",
        (
            ("alert_id", "String", "j.alert_id"),
            ("name", "LowCardinality(String)", "j.name"),
            ("severity", "LowCardinality(String)", "j.severity"),
            ("labels", "Map(LowCardinality(String), String)", "j.labels"),
            ("value", "Float64", "j.value"),
            ("threshold", "Float64", "j.threshold"),
            ("summary", "String", "j.summary"),
        ),
        (("j.alert_id = ''", "field alert_id missing"),),
        "(occurred_at, alert_id, event_id)",
        90,
    ),
    TableSpec(
        "heartbeats",
        ("worker.heartbeat", "resource.available"),
        "worker_id String, interval_s Float64, cpu_percent Float64, memory_rss_bytes Int64, "
        "disk_free_bytes Int64, disk_total_bytes Int64, queue_depth Int64, in_flight Int64, "
        "resource_kind String, amount Float64",
        (
            ("worker_id", "LowCardinality(String)", "j.worker_id"),
            ("interval_s", "Float64", "j.interval_s"),
            ("cpu_percent", "Float64", "j.cpu_percent"),
            ("memory_rss_bytes", "UInt64", "toUInt64(greatest(j.memory_rss_bytes, 0))"),
            ("disk_free_bytes", "UInt64", "toUInt64(greatest(j.disk_free_bytes, 0))"),
            ("disk_total_bytes", "UInt64", "toUInt64(greatest(j.disk_total_bytes, 0))"),
            ("queue_depth", "UInt32", "toUInt32(least(greatest(j.queue_depth, 0), 4294967295))"),
            ("in_flight", "UInt32", "toUInt32(least(greatest(j.in_flight, 0), 4294967295))"),
            ("resource_kind", "LowCardinality(String)", "j.resource_kind"),
            ("amount", "Float64", "j.amount"),
        ),
        (("j.worker_id = ''", "field worker_id missing"),),
        "(worker_id, occurred_at, event_id)",
        30,
    ),
    TableSpec(
        "healing_actions",
        ("healing.result",),
        "command_id String, worker_id String, action String, status String",
        (
            ("command_id", "String", "j.command_id"),
            ("worker_id", "LowCardinality(String)", "j.worker_id"),
            ("action", "LowCardinality(String)", "j.action"),
            ("status", "LowCardinality(String)", "j.status"),
        ),
        (
            ("j.command_id = ''", "field command_id missing"),
            ("j.status NOT IN ('done', 'failed', 'skipped')", "status is not done/failed/skipped"),
        ),
        "(occurred_at, command_id, event_id)",
        90,
    ),
    TableSpec(
        "dead_letters",
        ("task.dead_lettered",),
        "task_id String, template_id String, operation_type String, attempts Int64, "
        "errors Array(Tuple(category String, fingerprint String, error_type String))",
        (
            ("task_id", "String", "j.task_id"),
            ("template_id", "LowCardinality(String)", "j.template_id"),
            ("operation_type", "LowCardinality(String)", "j.operation_type"),
            ("attempts", "UInt16", "toUInt16(least(greatest(j.attempts, 0), 65535))"),
            ("fingerprint", "String", "tupleElement(arrayElement(j.errors, -1), 'fingerprint')"),
            (
                "category",
                "LowCardinality(String)",
                "tupleElement(arrayElement(j.errors, -1), 'category')",
            ),
        ),
        (("j.task_id = ''", "field task_id missing"),),
        "(occurred_at, task_id, event_id)",
        365,
    ),
    TableSpec(
        "poison_records",
        ("poison.record",),
        "source_topic String, partition Int64, offset Int64, reason String, raw_base64 String",
        (
            ("source_topic", "LowCardinality(String)", "j.source_topic"),
            ("source_partition", "Int32", "toInt32(j.partition)"),
            ("source_offset", "Int64", "j.offset"),
            ("reason", "String", "j.reason"),
            ("raw_base64", "String", "j.raw_base64"),
        ),
        (),
        "(occurred_at, event_id)",
        90,
    ),
)

_BY_TYPE = {type_: spec for spec in TABLES for type_ in spec.types}


def table_for_type(type_: str) -> TableSpec | None:
    return _BY_TYPE.get(type_)
