"""The one way to reach ClickHouse: :func:`connect`.

chDB (embedded, the default) and a ClickHouse server are both reached through
clickhouse-connect, with the same DDL and SQL. chDB facts this module designs around:
one directory can be opened by one process only, one process can open one chDB path
only, and there is no async client — :class:`AsyncClickHouse` runs every call on one
dedicated thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from sinks.ddl import ttl_expression
from sinks.errors import ClickHouseUnavailable
from sinks.migrations import MIGRATIONS, Migration
from sinks.settings import ClickHouseSettings
from sinks.tables import TABLES

__all__ = ["AsyncClickHouse", "apply_migrations", "connect", "connect_query_client"]

T = TypeVar("T")

# chDB allows one path per process: remember which one this process opened.
_opened_chdb_path: str | None = None
_chdb_client: Client | None = None


def _connect_chdb(settings: ClickHouseSettings) -> Client:
    global _opened_chdb_path, _chdb_client
    path = str(settings.chdb_path)
    if _chdb_client is not None:
        if path != _opened_chdb_path:
            raise ClickHouseUnavailable(
                f"this process already opened chDB at {_opened_chdb_path}; chDB allows one "
                f"path per process, so {path} cannot be opened too"
            )
        return _chdb_client
    settings.chdb_path.mkdir(parents=True, exist_ok=True)
    try:
        client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    except Exception as exc:
        raise ClickHouseUnavailable(
            f"cannot open chDB at {path} ({exc}); if `errorflow serve` runs, it owns this "
            "directory: query through it (`errorflow sql` does) or set CLICKHOUSE_URL"
        ) from exc
    _opened_chdb_path, _chdb_client = path, client
    return client


def connect(settings: ClickHouseSettings | None = None, *, migrate: bool = True) -> Client:
    """A clickhouse-connect client for the configured ClickHouse, schema applied.

    chDB under ``settings.chdb_path`` unless ``CLICKHOUSE_URL`` names a server. In one
    process, repeated calls for the same chDB path share one client.
    """
    settings = settings or ClickHouseSettings()
    if settings.clickhouse_url is None:
        client = _connect_chdb(settings)
    else:
        try:
            client = clickhouse_connect.get_client(dsn=settings.clickhouse_url.get_secret_value())
        except Exception as exc:
            raise ClickHouseUnavailable(f"cannot reach the ClickHouse server: {exc}") from exc
    if migrate:
        apply_migrations(client, settings.clickhouse_database)
        apply_retention(client, settings.clickhouse_database, settings.errorflow_retention_days)
    return client


def connect_query_client(settings: ClickHouseSettings | None = None) -> Client:
    """A connection for user SQL whose default database is errorflow's, so ``SELECT
    count() FROM events`` works. With a server it is a session of its own. With chDB it
    is the process's one client (a second chDB connection on the same path stopped the
    rollup's materialized view from firing for the sink's inserts — seen here): the SQL
    guard refusing every ``SET`` and ``SETTINGS`` is what keeps user SQL from changing
    the sink's session, and every query of the sink names its database."""
    settings = settings or ClickHouseSettings()
    database = settings.clickhouse_database
    client = connect(settings)  # the schema and retention first
    if settings.clickhouse_url is None:
        client.database = database
        return client
    try:
        return clickhouse_connect.get_client(
            dsn=settings.clickhouse_url.get_secret_value(), database=database
        )
    except Exception as exc:
        raise ClickHouseUnavailable(f"cannot reach the ClickHouse server: {exc}") from exc


def apply_retention(client: Client, database: str, days: dict[str, int]) -> None:
    """Set configured per-table retention (idempotent; existing parts are not rewritten
    at once — expired rows go at the next merge)."""
    known = {spec.name: spec for spec in TABLES}
    for table, count in days.items():
        if table not in known:
            raise ValueError(
                f"ERRORFLOW_RETENTION_DAYS names unknown table {table!r}; "
                f"known: {', '.join(sorted(known))}"
            )
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"retention for {table} must be a whole number of days >= 1")
        client.command(
            f"ALTER TABLE {database}.{table} MODIFY TTL {ttl_expression(count)}",
            settings={"materialize_ttl_after_modify": 0},
        )


def apply_migrations(
    client: Client, database: str, migrations: tuple[Migration, ...] = MIGRATIONS
) -> list[int]:
    """Apply the migrations not yet recorded; return the versions applied now."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_versions "
        "(version UInt32, description String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {
        row[0]
        for row in client.query(
            f"SELECT version FROM {database}.schema_versions"  # noqa: S608 - validated identifier
        ).result_rows
    }
    applied = []
    for migration in migrations:
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement.replace("{db}", database))
        client.insert(
            f"{database}.schema_versions",
            [[migration.version, migration.description]],
            column_names=["version", "description"],
        )
        applied.append(migration.version)
    return applied


class AsyncClickHouse:
    """Runs blocking client calls on one dedicated thread, awaitable from asyncio."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: func(*args, **kwargs))

    async def query_rows(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        result = await self.run(self.client.query, sql, parameters=parameters)
        return [tuple(row) for row in result.result_rows]

    async def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return await self.run(self.client.command, sql, parameters=parameters)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
