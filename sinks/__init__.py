"""History in ClickHouse: connection, schema, sink and queries."""

from sinks.clickhouse import AsyncClickHouse, apply_migrations, connect
from sinks.errors import ClickHouseUnavailable, SinkError
from sinks.settings import ClickHouseSettings

__all__ = [
    "AsyncClickHouse",
    "ClickHouseSettings",
    "ClickHouseUnavailable",
    "SinkError",
    "apply_migrations",
    "connect",
]
