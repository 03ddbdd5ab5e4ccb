"""Versioned DDL, applied idempotently at start.

Each migration is a version and its statements; applied versions are recorded in
``schema_versions`` so a restart applies nothing twice. Every statement is also
harmless when repeated (``IF NOT EXISTS`` / ``OR REPLACE``), so a crash mid-migration
is recovered by running it again. ``{db}`` stands for the database name (replaced, not
``str.format``-ed: DDL is full of braces).
"""

from __future__ import annotations

from dataclasses import dataclass

from sinks.ddl import ROLLUP_DDL, ROLLUP_VIEW_DDL, poison_view_ddl, table_ddl
from sinks.tables import TABLES

__all__ = ["MIGRATIONS", "Migration"]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "tables for every topic, per-minute rollup, poison view",
        (
            *(table_ddl(spec, "{db}") for spec in TABLES),
            *ROLLUP_DDL,
            poison_view_ddl("{db}"),
        ),
    ),
    Migration(
        2,
        "rollup counts calls as the stream does: rejected calls are no attempts, a "
        "fallback after a failure is an error (rows rolled up before stay as they were)",
        ("DROP VIEW IF EXISTS {db}.events_per_minute_mv", ROLLUP_VIEW_DDL),
    ),
)
