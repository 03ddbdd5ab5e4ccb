"""The query library: every read the API, the CLI and ``get_error_analysis`` make.

Parameterised SQL only: values are bound server-side (``{name:Type}``); the few
identifiers a caller chooses (a grouping dimension, an interval) come from fixed
allowlists, never from the caller's string. Every query skips rows whose ``_error``
is set (they live in the ``poison`` view). Functions are synchronous (run them on
:class:`sinks.AsyncClickHouse`'s thread from async code).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from clickhouse_connect.driver.client import Client

__all__ = [
    "breaker_history",
    "breaker_opens",
    "recent_anomalies",
    "resource_errors_by_template",
    "error_rate_by_template",
    "error_trend",
    "healing_history",
    "latest_breaker_states",
    "recovery_stats",
    "recovery_stats_by",
    "task_history",
    "top_fingerprints",
]

Interval = Literal["minute", "hour"]
Dimension = Literal["category", "service", "template_id", "kind"]
_INTERVALS = {"minute": "minute", "hour": "toStartOfHour(minute)"}
_DIMENSIONS = {"category", "service", "template_id", "kind"}


def _rows(client: Client, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    result = client.query(sql, parameters=params)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def _window(since: datetime | None, until: datetime | None, default: timedelta) -> dict[str, Any]:
    until = until or datetime.now(UTC)
    since = since or until - default
    return {
        "since": since.astimezone(UTC).replace(tzinfo=None),
        "until": until.astimezone(UTC).replace(tzinfo=None),
    }


def error_trend(
    client: Client,
    *,
    database: str = "errorflow",
    interval: Interval = "minute",
    by: Dimension | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: Literal["task", "call"] | None = "task",
    service: str | None = None,
    template_id: str | None = None,
) -> list[dict[str, Any]]:
    """Attempts, errors and error rate per minute or hour, optionally split by a dimension.

    Read from the per-minute rollup, so a 24 h or 7 day trend reads thousands of rows,
    not millions.
    """
    if interval not in _INTERVALS:
        raise ValueError(f"interval must be one of {sorted(_INTERVALS)}")
    if by is not None and by not in _DIMENSIONS:
        raise ValueError(f"by must be one of {sorted(_DIMENSIONS)}")
    bucket = _INTERVALS[interval]
    group = f", {by}" if by else ""
    sql = f"""
        SELECT {bucket} AS bucket{group}, sum(attempts) AS attempts, sum(errors) AS errors,
               if(attempts = 0, 0, errors / attempts) AS error_rate
        FROM {database}.events_per_minute
        WHERE minute >= toStartOfMinute({{since:DateTime64(3)}})
          AND minute < {{until:DateTime64(3)}}
          AND ({{kind:String}} = '' OR kind = {{kind:String}})
          AND ({{service:String}} = '' OR service = {{service:String}})
          AND ({{template_id:String}} = '' OR template_id = {{template_id:String}})
        GROUP BY bucket{group}
        ORDER BY bucket{group}
    """  # noqa: S608 - identifiers from allowlists above; values bound
    params = _window(since, until, timedelta(hours=24))
    params |= {"kind": kind or "", "service": service or "", "template_id": template_id or ""}
    return _rows(client, sql, params)


def error_rate_by_template(
    client: Client,
    *,
    database: str = "errorflow",
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Task attempts, errors and error rate per template, worst first."""
    sql = f"""
        SELECT template_id, sum(attempts) AS attempts, sum(errors) AS errors,
               if(attempts = 0, 0, errors / attempts) AS error_rate
        FROM {database}.events_per_minute
        WHERE kind = 'task' AND minute >= toStartOfMinute({{since:DateTime64(3)}})
          AND minute < {{until:DateTime64(3)}}
        GROUP BY template_id ORDER BY error_rate DESC, attempts DESC
    """  # noqa: S608
    return _rows(client, sql, _window(since, until, timedelta(hours=24)))


def top_fingerprints(
    client: Client,
    *,
    database: str = "errorflow",
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """The most frequent errors: first/last seen, count, and how often a retry rescued
    the task (tasks that later succeeded / tasks that hit this error and were retried)."""
    sql = f"""
        WITH errs AS (
            SELECT fingerprint, task_id, type, error_type, message, category, occurred_at
            FROM {database}.events
            WHERE _error = '' AND type IN ('task.attempt_failed', 'task.failed')
              AND occurred_at >= {{since:DateTime64(3)}} AND occurred_at < {{until:DateTime64(3)}}
        ),
        ok AS (
            SELECT DISTINCT task_id FROM {database}.events
            WHERE _error = '' AND type = 'task.succeeded'
              AND task_id IN (SELECT task_id FROM errs WHERE type = 'task.attempt_failed')
        )
        SELECT fingerprint, any(error_type) AS error_type, any(category) AS category,
               any(message) AS message, count() AS count,
               min(occurred_at) AS first_seen, max(occurred_at) AS last_seen,
               uniqExactIf(task_id, type = 'task.attempt_failed') AS retried_tasks,
               uniqExactIf(task_id, type = 'task.attempt_failed' AND task_id IN ok)
                   AS recovered_tasks,
               if(retried_tasks = 0, NULL, recovered_tasks / retried_tasks) AS retry_success_ratio
        FROM errs GROUP BY fingerprint ORDER BY count DESC LIMIT {{limit:UInt32}}
    """  # noqa: S608
    return _rows(client, sql, _window(since, until, timedelta(hours=24)) | {"limit": limit})


def task_history(
    client: Client, task_id: str, *, database: str = "errorflow"
) -> list[dict[str, Any]]:
    """Every event and command of one task, ordered by event time, then by where it was
    read (topic, partition, offset: a task's events share a partition, so its order)."""
    sql = f"""
        SELECT occurred_at, type, attempt, category, error_type, fingerprint, message, rule,
               service, outcome, duration_ms, command_id, reason, event_id
        FROM (
            SELECT occurred_at, type, attempt, category, error_type, fingerprint, message,
                   rule, service, outcome, duration_ms, '' AS command_id, '' AS reason,
                   event_id, _topic, _offset
            FROM {database}.events WHERE _error = '' AND task_id = {{task_id:String}}
            UNION ALL
            SELECT occurred_at, type, attempt, '', '', '', notification, '', '', '', 0,
                   command_id, reason, event_id, _topic, _offset
            FROM {database}.commands WHERE _error = '' AND task_id = {{task_id:String}}
            UNION ALL
            SELECT occurred_at, type, attempts, category, '', fingerprint, '', '', '', '', 0,
                   '', '', event_id, _topic, _offset
            FROM {database}.dead_letters WHERE _error = '' AND task_id = {{task_id:String}}
        )
        ORDER BY occurred_at, _topic, _offset
    """  # noqa: S608
    return _rows(client, sql, {"task_id": task_id})


def breaker_history(
    client: Client,
    *,
    database: str = "errorflow",
    service: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Breaker transitions, oldest first."""
    sql = f"""
        SELECT occurred_at, service, state, since, reason, failure_count, failure_rate, calls,
               workers_failing
        FROM {database}.breaker_states
        WHERE _error = '' AND ({{service:String}} = '' OR service = {{service:String}})
          AND occurred_at >= {{since:DateTime64(3)}} AND occurred_at < {{until:DateTime64(3)}}
        ORDER BY occurred_at
    """  # noqa: S608
    params = _window(since, until, timedelta(days=7)) | {"service": service or ""}
    return _rows(client, sql, params)


def latest_breaker_states(client: Client, *, database: str = "errorflow") -> list[dict[str, Any]]:
    """The newest known state per service."""
    sql = f"""
        SELECT service, argMax(state, occurred_at) AS state, max(occurred_at) AS updated_at,
               argMax(reason, occurred_at) AS reason,
               argMax(failure_count, occurred_at) AS failures
        FROM {database}.breaker_states WHERE _error = '' GROUP BY service ORDER BY service
    """  # noqa: S608
    return _rows(client, sql, {})


_RECOVERY_COUNTS = (
    ("retries_issued", "commands", "type = 'recovery.retry'"),
    ("succeeded_after_retry", "events", "type = 'task.succeeded' AND attempt > 1"),
    ("local_retries", "events", "type = 'task.attempt_failed'"),
    ("queued", "commands", "type = 'recovery.queued'"),
    (
        "released",
        "commands",
        "type = 'recovery.retry' AND task_id IN (SELECT task_id FROM "
        "{db}.commands WHERE _error = '' AND type = 'recovery.queued')",
    ),
    ("dead_lettered", "commands", "type = 'recovery.dead_lettered'"),
    ("failed_fast", "commands", "type = 'recovery.fail_fast'"),
    ("compensations_done", "events", "type = 'compensation.completed'"),
    ("compensations_failed", "events", "type = 'compensation.failed'"),
)


def recovery_stats(
    client: Client,
    *,
    database: str = "errorflow",
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Retried, succeeded after retry, queued, released, dead-lettered, failed fast,
    compensations done and failed."""
    # Tables and conditions are the constants above; only the window is bound.
    counts = ",\n".join(
        f"(SELECT count() FROM {database}.{table} WHERE _error = '' "  # noqa: S608
        f"AND {condition.format(db=database)} AND occurred_at >= {{since:DateTime64(3)}} "
        f"AND occurred_at < {{until:DateTime64(3)}}) AS {name}"
        for name, table, condition in _RECOVERY_COUNTS
    )
    rows = _rows(client, f"SELECT {counts}", _window(since, until, timedelta(hours=24)))
    return rows[0]


def recovery_stats_by(
    client: Client,
    *,
    database: str = "errorflow",
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Recovery per template and error category: retries issued, released from the
    resource queue, queued, dead-lettered, failed fast (from the optional ``category``
    field the recovery manager puts on its commands), and per template the tasks that
    succeeded after a retry."""
    sql = f"""
        SELECT c.template_id AS template_id, c.category AS category,
               c.retries_issued AS retries_issued, c.released AS released,
               c.queued AS queued, c.dead_lettered AS dead_lettered,
               c.failed_fast AS failed_fast,
               ifNull(s.succeeded_after_retry, 0) AS succeeded_after_retry
        FROM (SELECT template_id, JSONExtractString(payload, 'category') AS category,
                     countIf(type = 'recovery.retry') AS retries_issued,
                     countIf(type = 'recovery.retry'
                             AND startsWith(reason, 'resource error: released')) AS released,
                     countIf(type = 'recovery.queued') AS queued,
                     countIf(type = 'recovery.dead_lettered') AS dead_lettered,
                     countIf(type = 'recovery.fail_fast') AS failed_fast
              FROM {database}.commands
              WHERE _error = '' AND startsWith(type, 'recovery.')
                AND occurred_at >= {{since:DateTime64(3)}} AND occurred_at < {{until:DateTime64(3)}}
              GROUP BY template_id, category) AS c
        LEFT JOIN (SELECT template_id, count() AS succeeded_after_retry
                   FROM {database}.events
                   WHERE _error = '' AND type = 'task.succeeded' AND attempt > 1
                     AND occurred_at >= {{since:DateTime64(3)}}
                     AND occurred_at < {{until:DateTime64(3)}}
                   GROUP BY template_id) AS s
          ON c.template_id = s.template_id
        ORDER BY template_id, category
    """  # noqa: S608
    return _rows(client, sql, _window(since, until, timedelta(hours=24)))


def healing_history(
    client: Client,
    *,
    database: str = "errorflow",
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Self-healing actions and their outcomes (pending when no result came back)."""
    sql = f"""
        SELECT a.occurred_at AS requested_at, a.worker_id AS worker_id, a.action AS action,
               a.reason AS reason, a.command_id AS command_id,
               if(r.command_id = '', 'pending', r.status) AS status,
               if(r.command_id = '', NULL, r.last_at) AS finished_at
        FROM (SELECT * FROM {database}.commands WHERE _error = '' AND type = 'healing.action'
              AND occurred_at >= {{since:DateTime64(3)}}
              AND occurred_at < {{until:DateTime64(3)}}) AS a
        LEFT JOIN (SELECT command_id, argMax(status, occurred_at) AS status,
                          max(occurred_at) AS last_at
                   FROM {database}.healing_actions WHERE _error = '' GROUP BY command_id) AS r
          ON a.command_id = r.command_id
        ORDER BY requested_at DESC LIMIT {{limit:UInt32}}
    """  # noqa: S608
    return _rows(client, sql, _window(since, until, timedelta(days=7)) | {"limit": limit})


def healing_stats(
    client: Client,
    *,
    database: str = "errorflow",
    since: datetime | None = None,
    worker_id: str | None = None,
) -> dict[str, Any]:
    """Self-healing per detector and action since ``since`` (:func:`healing.stats.tally`):
    issued, answered, verified, held back — of one worker, or of all."""
    from healing.stats import tally

    window = {**_window(since, None, timedelta(days=1)), "worker": worker_id or ""}
    mine = "AND ({worker:String} = '' OR worker_id = {worker:String})"
    actions = _rows(
        client,
        f"""
        SELECT command_id, action, JSONExtractString(payload, 'params', 'problem') AS problem,
               JSONExtractBool(payload, 'params', 'dry_run') AS dry_run
        FROM {database}.commands
        WHERE _error = '' AND type = 'healing.action' {mine}
          AND occurred_at >= {{since:DateTime64(3)}} AND occurred_at < {{until:DateTime64(3)}}
        """,  # noqa: S608
        window,
    )
    results = _rows(
        client,
        f"""
        SELECT command_id, action, status,
               JSONExtractString(payload, 'details', 'kind') AS kind,
               JSONExtractString(payload, 'details', 'problem') AS problem,
               JSONExtractString(payload, 'details', 'verdict') AS verdict
        FROM {database}.healing_actions
        WHERE _error = '' {mine}
          AND occurred_at >= {{since:DateTime64(3)}} AND occurred_at < {{until:DateTime64(3)}}
        """,  # noqa: S608
        window,
    )
    return tally(actions, results)


def recent_anomalies(
    client: Client,
    *,
    database: str = "errorflow",
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Anomalies detected in the window, newest first."""
    sql = f"""
        SELECT occurred_at, kind, key, value, baseline, spread, score, window_start, window_end
        FROM {database}.anomalies
        WHERE _error = '' AND occurred_at >= {{since:DateTime64(3)}}
          AND occurred_at < {{until:DateTime64(3)}}
        ORDER BY occurred_at DESC LIMIT {{limit:UInt32}}
    """  # noqa: S608
    return _rows(client, sql, _window(since, until, timedelta(hours=1)) | {"limit": limit})


def breaker_opens(
    client: Client,
    *,
    database: str = "errorflow",
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """How often each service's breaker opened in the window."""
    sql = f"""
        SELECT service, count() AS opens FROM {database}.breaker_states
        WHERE _error = '' AND state = 'open' AND occurred_at >= {{since:DateTime64(3)}}
          AND occurred_at < {{until:DateTime64(3)}}
        GROUP BY service ORDER BY opens DESC
    """  # noqa: S608
    return _rows(client, sql, _window(since, until, timedelta(hours=1)))


def resource_errors_by_template(
    client: Client,
    *,
    database: str = "errorflow",
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Resource errors per template in the window and in the window before it."""
    window = _window(since, until, timedelta(minutes=5))
    window["before"] = window["since"] - (window["until"] - window["since"])
    sql = f"""
        SELECT template_id,
               sumIf(errors, minute >= toStartOfMinute({{since:DateTime64(3)}})) AS current,
               sumIf(errors, minute < toStartOfMinute({{since:DateTime64(3)}})) AS previous
        FROM {database}.events_per_minute
        WHERE kind = 'task' AND category = 'resource'
          AND minute >= toStartOfMinute({{before:DateTime64(3)}})
          AND minute < {{until:DateTime64(3)}}
        GROUP BY template_id
    """  # noqa: S608
    return _rows(client, sql, window)


def workers_seen(
    client: Client, *, database: str = "errorflow", within_s: int = 300
) -> list[dict[str, Any]]:
    """Workers that sent a heartbeat lately, with when and how often they say they beat."""
    sql = f"""
        SELECT worker_id, max(occurred_at) AS last_heartbeat, argMax(interval_s, occurred_at)
               AS interval_s
        FROM {database}.heartbeats
        WHERE _error = '' AND type = 'worker.heartbeat'
          AND occurred_at >= now64(3) - toIntervalSecond({{within:UInt32}})
        GROUP BY worker_id ORDER BY worker_id
    """  # noqa: S608
    return _rows(client, sql, {"within": within_s})


def service_known(client: Client, service: str, *, database: str = "errorflow") -> bool:
    """Whether errorflow has seen ``service``: a fleet breaker state or a call to it."""
    sql = f"""
        SELECT 1 FROM {database}.breaker_states WHERE service = {{service:String}} LIMIT 1
        UNION ALL
        SELECT 1 FROM {database}.events
        WHERE type = 'call.completed' AND service = {{service:String}} LIMIT 1
    """  # noqa: S608
    return bool(client.query(sql, parameters={"service": service}).result_rows)


def latest_thresholds(client: Client, *, database: str = "errorflow") -> dict[str, Any] | None:
    """The alert thresholds last set on the control topic, if any."""
    sql = f"""
        SELECT error_rate, specific_error_count, recovery_failure_rate FROM {database}.control
        WHERE _error = '' AND type = 'alerts.thresholds'
        ORDER BY occurred_at DESC, _offset DESC LIMIT 1
    """  # noqa: S608
    rows = client.query(sql).result_rows
    if not rows:
        return None
    rate, count, recovery = rows[0]
    return {"error_rate": rate, "specific_error_count": count, "recovery_failure_rate": recovery}


def dead_letters(
    client: Client, *, database: str = "errorflow", limit: int = 100
) -> list[dict[str, Any]]:
    """The newest dead letters: task, template, attempts, last error, when."""
    sql = f"""
        SELECT occurred_at, task_id, template_id, attempts, category, fingerprint, event_id
        FROM {database}.dead_letters WHERE _error = ''
        ORDER BY occurred_at DESC LIMIT {{limit:UInt32}}
    """  # noqa: S608
    return _rows(client, sql, {"limit": limit})


def recent_heartbeats(
    client: Client, *, database: str = "errorflow", within_s: int = 3600
) -> list[dict[str, Any]]:
    """Heartbeats of the last ``within_s``, per worker oldest first (models as JSON)."""
    sql = f"""
        SELECT worker_id, toUnixTimestamp64Milli(occurred_at) AS at_ms, interval_s,
               cpu_percent, memory_rss_bytes, disk_free_bytes, disk_total_bytes,
               queue_depth, in_flight, JSONExtractRaw(payload, 'models') AS models,
               JSONExtractBool(payload, 'stopping') AS stopping,
               JSONExtractUInt(payload, 'command_lag') AS command_lag
        FROM {database}.heartbeats
        WHERE _error = '' AND type = 'worker.heartbeat'
          AND occurred_at >= now64(3) - toIntervalSecond({{within:UInt32}})
        ORDER BY worker_id, occurred_at
    """  # noqa: S608
    return _rows(client, sql, {"within": within_s})
