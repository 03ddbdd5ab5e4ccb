"""Stage 2: partial counts → windows, anomalies and alerts, exactly once.

One :class:`~streams.analytics.ErrorAnalytics` engine per partition of the partials
topic (a key always lands on the same partition). Every tick, the engines close due
windows; the anomalies, alert changes, closed windows, each engine's snapshot and the
consumed offsets go out in one Kafka transaction. On assignment an engine is restored
from the latest committed snapshot, which matches the committed offset exactly — a
SIGKILL or a rebalance loses and repeats nothing.

Thresholds (``alerts.thresholds`` on ``errorflow.control``) and breaker states (for the
inhibited-by label) are read by a group-less consumer and apply at once, no restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from schemas import (
    BreakerStateChanged,
    DecodeError,
    SetAlertThresholds,
    Source,
    decode,
    encode,
    key_of,
)
from schemas.topics import ALERTS, ANOMALIES, BREAKER_STATE, CONTROL
from streams.analytics import ErrorAnalytics
from streams.emit import alert_event, anomaly_event, window_row
from streams.partials import decode_partial
from streams.settings import WorkerSettings

__all__ = ["DetectionStage"]

log = logging.getLogger("errorflow.worker.detection")


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, stage: DetectionStage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.stage.checkpoint()
        for tp in revoked:
            self.stage.engines.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.stage.restore([tp.partition for tp in assigned])
        await self.stage.start_at_committed(assigned)


class DetectionStage:
    def __init__(self, settings: WorkerSettings, source: Source) -> None:
        self.settings = settings
        self.source = source
        self.group = f"{settings.app_id}-detect"
        self.engines: dict[int, ErrorAnalytics] = {}
        self.counters = {"anomalies": 0, "alerts": 0, "windows": 0}
        self._pending: dict[TopicPartition, int] = {}
        self._dirty: set[int] = set()
        self._thresholds: SetAlertThresholds | None = None
        self._breakers: dict[str, str] = {}
        bootstrap = settings.kafka_bootstrap_servers
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=max(300, settings.session_timeout_ms // 5),
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=f"{settings.app_id}-detect-{settings.name}",
            enable_idempotence=True,
            linger_ms=5,
            transaction_timeout_ms=15_000,
        )
        self._lock = asyncio.Lock()

    def _new_engine(self) -> ErrorAnalytics:
        engine = ErrorAnalytics(self.settings.analytics())
        if self._thresholds is not None:
            engine.set_thresholds(self._thresholds)
        for service, state in self._breakers.items():
            engine.set_breaker(service, state)
        return engine

    async def run(self, stop: asyncio.Event) -> None:
        await self._producer.start()
        await self._consumer.start()
        control = asyncio.create_task(self._follow_control(stop))
        try:
            self._consumer.subscribe([self.settings.topic("partials")], listener=_Listener(self))
            next_tick = time.monotonic()
            while not stop.is_set():
                batch = await self._consumer.getmany(timeout_ms=100, max_records=5000)
                for tp, records in batch.items():
                    engine = self.engines.get(tp.partition)
                    if engine is None:
                        continue  # revoked meanwhile
                    for record in records:
                        item = decode_partial(record.value)
                        if len(item) == 2:
                            engine.mark_source(item[0], item[1])
                        else:
                            engine.observe_counts(item[0], item[1], item[2])
                    self._pending[tp] = records[-1].offset + 1
                    self._dirty.add(tp.partition)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.settings.tick_s
                    await self.checkpoint()
            await self.checkpoint()
        finally:
            control.cancel()
            await self._consumer.stop()
            await self._producer.stop()

    async def checkpoint(self) -> None:
        """Close due windows and commit outputs, snapshots and offsets together."""
        async with self._lock:
            now_ms = int(time.time() * 1000)
            idle_ms = int(self.settings.idle_close_s * 1000)
            outputs: list[tuple[str, bytes, bytes, bytes | None]] = []
            for partition, engine in self.engines.items():
                windows, anomalies, changes = engine.tick(now_ms, idle_ms=idle_ms)
                if windows or anomalies or changes:
                    self._dirty.add(partition)
                for result in windows:
                    key, value = window_row(result)
                    outputs.append((self.settings.topic("windows"), key, value, None))
                for anomaly in anomalies:
                    event = anomaly_event(anomaly, self.source)
                    outputs.append(
                        (ANOMALIES.name, key_of(event).encode(), encode(event), event.type.encode())
                    )
                for change in changes:
                    alert = alert_event(change, self.source)
                    outputs.append(
                        (ALERTS.name, key_of(alert).encode(), encode(alert), alert.type.encode())
                    )
                self.counters["windows"] += len(windows)
                self.counters["anomalies"] += len(anomalies)
                self.counters["alerts"] += len(changes)
            if not outputs and not self._dirty and not self._pending:
                return
            async with self._producer.transaction():
                for topic, key, value, type_ in outputs:
                    headers = [("type", type_)] if type_ else []
                    await self._producer.send(topic, value, key=key, headers=headers)
                for partition in sorted(self._dirty):
                    owned = self.engines.get(partition)
                    if owned is not None:
                        snapshot = json.dumps(owned.snapshot(), separators=(",", ":")).encode()
                        await self._producer.send(
                            self.settings.topic("state"), snapshot, key=str(partition).encode()
                        )
                if self._pending:
                    await self._producer.send_offsets_to_transaction(
                        dict(self._pending), self.group
                    )
            self._pending.clear()
            self._dirty.clear()

    async def restore(self, partitions: list[int]) -> None:
        """Engines for newly assigned partitions, from their latest committed snapshot."""
        latest = await self._read_snapshots(set(partitions))
        log.info(
            "errorflow.worker.restored partitions=%s from_snapshot=%s", partitions, sorted(latest)
        )
        for partition in partitions:
            engine = self._new_engine()
            if partition in latest:
                engine.restore(latest[partition])
            self.engines[partition] = engine

    async def start_at_committed(self, assigned: list[TopicPartition]) -> None:
        """Position each partition at its committed offset, the one its restored snapshot
        matches. (Without this explicit seek a worker restarted after SIGKILL was seen
        never fetching the partials written after its predecessor's last commit.)"""
        for tp in assigned:
            committed = await self._consumer.committed(tp)
            if committed is not None:
                self._consumer.seek(tp, committed)

    async def _read_snapshots(self, wanted: set[int]) -> dict[int, dict[str, Any]]:
        topic = self.settings.topic("state")
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await reader.start()
        try:
            partitions = await self._producer.partitions_for(topic)
            parts = [TopicPartition(topic, p) for p in sorted(partitions)]
            reader.assign(parts)
            await reader.seek_to_beginning(*parts)
            ends = await reader.end_offsets(parts)
            latest: dict[int, dict[str, Any]] = {}
            idle_polls = 0
            # Read to the end. A partition may end with transaction markers, which the
            # client never surfaces as records, so stop after a few empty polls too.
            while idle_polls < 3 and [tp for tp in parts if await reader.position(tp) < ends[tp]]:
                batch = await reader.getmany(timeout_ms=300)
                idle_polls = 0 if batch else idle_polls + 1
                for records in batch.values():
                    for record in records:
                        partition = int(record.key)
                        if partition in wanted and record.value is not None:
                            latest[partition] = json.loads(record.value)
            return latest
        finally:
            await reader.stop()

    async def _follow_control(self, stop: asyncio.Event) -> None:
        """Thresholds and breaker states, applied as they arrive."""
        consumer = AIOKafkaConsumer(
            CONTROL.name,
            BREAKER_STATE.name,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        self._apply_control(record.value)
        finally:
            await consumer.stop()

    def _apply_control(self, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            event = decode(raw)
        except DecodeError as exc:
            log.warning("errorflow.worker.bad_control", extra={"reason": exc.reason})
            return
        if isinstance(event, SetAlertThresholds):
            self._thresholds = event
            for engine in self.engines.values():
                engine.set_thresholds(event)
        elif isinstance(event, BreakerStateChanged):
            self._breakers[event.service] = event.state
            for engine in self.engines.values():
                engine.set_breaker(event.service, event.state)
