"""Following the broadcast topics (control, breaker states, heartbeats) as decoded events.

A record that does not decode is skipped with a log line (rate-limited): these topics'
bad records are the sink's to keep in its poison table, and every follower gives the
codec's verdict, so none of them counts what another refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from schemas import DecodeError, Envelope, decode
from streams.engine.follow import follow_records
from streams.settings import WorkerSettings

__all__ = ["follow_events"]

log = logging.getLogger("errorflow.worker.follow")


async def follow_events(
    settings: WorkerSettings,
    topics: list[str],
    stop: asyncio.Event,
    *,
    lookback_s: float | None = None,
) -> AsyncIterator[Envelope]:
    """Decoded events of ``topics`` from the beginning (or from ``lookback_s`` ago) on."""
    skipped = 0
    async for record in follow_records(
        settings.kafka_bootstrap_servers, topics, stop, lookback_s=lookback_s
    ):
        try:
            yield decode(record.value)
        except DecodeError as exc:
            skipped += 1
            if skipped & (skipped - 1) == 0:  # 1st, 2nd, 4th, 8th...: never a flood
                log.warning(
                    "errorflow.worker.undecodable topic=%s partition=%d offset=%d "
                    "skipped=%d reason=%s",
                    record.topic,
                    record.partition,
                    record.offset,
                    skipped,
                    exc.reason,
                )
