"""Versioned DDL, applied idempotently at start.

Each migration is a version and its statements; applied versions are recorded in
``schema_versions`` so a restart applies nothing twice. Every statement is also
written to be harmless when repeated (``IF NOT EXISTS``), so a crash mid-migration
is recovered by running it again. ``{db}`` is the database name.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "Migration"]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "poison records",
        (
            """
            CREATE TABLE IF NOT EXISTS {db}.poison (
                event_id String,
                received_at DateTime64(3, 'UTC'),
                source_topic LowCardinality(String),
                partition Int32,
                offset Int64,
                reason String,
                raw_base64 String
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(received_at)
            ORDER BY (source_topic, partition, offset)
            """,
        ),
    ),
)
