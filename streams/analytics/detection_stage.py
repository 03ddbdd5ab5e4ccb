"""Stage 2: partial counts → windows, anomalies and alerts, exactly once.

One :class:`~streams.analytics.detector.ErrorAnalytics` engine per partition of the partials
topic (a key always lands on the same partition). Every tick, the engines close due
windows; the anomalies, alert changes, closed windows, each engine's snapshot and the
consumed offsets go out in one Kafka transaction (:class:`~streams.engine.stage.EngineStage`).

Thresholds (``alerts.thresholds`` on ``errorflow.control``) and breaker states (for the
inhibited-by label) are read by a group-less consumer and apply at once, no restart.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from schemas import BreakerStateChanged, SetAlertThresholds, Source
from schemas.topics import BREAKER_STATE, CONTROL
from streams.analytics.detector import ErrorAnalytics
from streams.analytics.partials import MARK_FRESH_MS, decode_partial
from streams.analytics.records import alert_event, anomaly_event, window_row
from streams.analytics.windows import WindowCounts
from streams.engine import EngineStage, Output
from streams.engine.stage import Record
from streams.follow import follow_events
from streams.outputs import output_of
from streams.settings import WorkerSettings

__all__ = ["DetectionStage"]

log = logging.getLogger("errorflow.worker.detect")


class DetectionStage(EngineStage[ErrorAnalytics]):
    def __init__(self, settings: WorkerSettings, source: Source) -> None:
        super().__init__(settings.engine(), name="detect", topics=[settings.topic("partials")])
        self.settings = settings
        self.source = source
        self.counters = {"anomalies": 0, "alerts": 0, "windows": 0}
        self._thresholds: SetAlertThresholds | None = None
        self._breakers: dict[str, str] = {}

    def internal_topics(self) -> list[NewTopic]:
        windows = NewTopic(self.settings.topic("windows"), self.settings.internal_partitions, 1)
        return [*super().internal_topics(), windows]

    def late_dropped(self) -> int:
        """Counts that arrived after their windows closed (they are in ClickHouse only)."""
        return sum(e.tumbling.late_dropped for e in self.engines.values())

    def new_engine(self, tp: TopicPartition) -> ErrorAnalytics:
        engine = ErrorAnalytics(self.settings.analytics())
        if self._thresholds is not None:
            engine.set_thresholds(self._thresholds)
        for service, state in self._breakers.items():
            engine.set_breaker(service, state)
        return engine

    def feed(self, engine: ErrorAnalytics, record: Record) -> None:
        key, at_ms, payload = decode_partial(record.value or b"")
        if isinstance(payload, WindowCounts):
            if not engine.observe_counts(key, at_ms, payload):
                self._late(engine, record, key, at_ms, payload)
        else:
            engine.mark_source(
                key, at_ms, idle_since_ms=payload.idle_since_ms, said_ms=payload.said_ms
            )

    def _late(
        self, engine: ErrorAnalytics, record: Record, key: str, at_ms: int, counts: WindowCounts
    ) -> None:
        """Counts whose window had closed: in ClickHouse, not in any window. Logged (1st,
        2nd, 4th... time) with what closed it, since a window that misses counts is a
        wrong number on the dashboard."""
        late = self.late_dropped()
        if late & (late - 1):
            return
        log.warning(
            "errorflow.worker.late partition=%d offset=%d key=%s bucket_ms=%d attempts=%d "
            "watermark_ms=%d late_total=%d marks=%s",
            record.partition,
            record.offset,
            key,
            at_ms,
            counts.attempts,
            engine.tumbling.watermark_ms,
            late,
            engine.source_marks,
        )

    def collect(self, engine: ErrorAnalytics, now_ms: int) -> list[Output]:
        idle_ms = int(self.settings.idle_close_s * 1000)
        # Idle words come once per checkpoint at most: with a slow tick, wait longer.
        fresh_ms = max(MARK_FRESH_MS, int(3 * self.settings.tick_s * 1000))
        windows, anomalies, changes = engine.tick(now_ms, idle_ms=idle_ms, fresh_ms=fresh_ms)
        self.counters["windows"] += len(windows)
        self.counters["anomalies"] += len(anomalies)
        self.counters["alerts"] += len(changes)
        topic = self.settings.topic("windows")
        return [
            *(Output(topic, *window_row(result)) for result in windows),
            *(output_of(anomaly_event(anomaly, self.source)) for anomaly in anomalies),
            *(output_of(alert_event(change, self.source)) for change in changes),
        ]

    def changes(self, engine: ErrorAnalytics) -> dict[str, Any | None]:
        # Called for partitions that were fed or emitted: the snapshot is one entry.
        return {"engine": engine.snapshot()}

    def load(self, engine: ErrorAnalytics, entries: dict[str, Any]) -> None:
        if "engine" in entries:
            engine.restore(entries["engine"])

    async def background(self, stop: asyncio.Event) -> None:
        """Thresholds and breaker states, applied as they arrive."""
        settings = self.settings
        async for event in follow_events(settings, [CONTROL.name, BREAKER_STATE.name], stop):
            if isinstance(event, SetAlertThresholds):
                self._thresholds = event
                for engine in self.engines.values():
                    engine.set_thresholds(event)
            elif isinstance(event, BreakerStateChanged):
                self._breakers[event.service] = event.state
                for engine in self.engines.values():
                    engine.set_breaker(event.service, event.state)
