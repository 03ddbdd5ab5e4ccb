"""A consumer-group stage whose per-partition state is exactly once with its outputs.

Each assigned input partition gets an engine (pure state, see the subclasses). Every
checkpoint — after a batch with news when the stage is urgent, else every ``tick_s`` —
collects the engines' due outputs and writes them, the engines' changed state entries
and the consumed offsets in one Kafka transaction. State entries go to a compacted changelog
topic keyed ``<partition>/<key>`` (a tombstone deletes one), so a checkpoint writes only
what changed. On assignment an engine is rebuilt from that changelog, which matches the
committed offset exactly: a SIGKILL or a rebalance loses and repeats nothing.

This is the Kafka Streams state-store recipe, owned here instead of Faust's tables
(whose windowed tables lose state on rebalance; see ../shared/STYLE.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import NewTopic

from schemas import DecodeError, Envelope, Source, decode, encode, key_of
from schemas.topics import topic_of
from streams.follow import read_to_end
from streams.settings import WorkerSettings

__all__ = ["EngineStage", "Output"]

log = logging.getLogger("errorflow.worker.stage")

E = TypeVar("E")
_MAX_ENTRY = 8 << 20


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
    type: bytes | None = None

    @classmethod
    def event(cls, event: Envelope) -> Output:
        """A contract record on its topic, keyed as the contract says, with its type header."""
        return cls(topic_of(event).name, key_of(event).encode(), encode(event), event.type.encode())


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, stage: EngineStage[Any]) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.stage.checkpoint()
        for tp in revoked:
            self.stage.engines.pop(tp.partition, None)
            self.stage._next.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.stage.take_over(assigned)
        log.info(
            "errorflow.worker.assigned stage=%s partitions=%s",
            self.stage.name,
            sorted(tp.partition for tp in assigned),
        )


class EngineStage(ABC, Generic[E]):
    """Subclasses say what to build, feed and collect; this class owns the Kafka part."""

    #: Checkpoint right after a batch that fed something (low latency), not only per tick.
    urgent = False

    def __init__(
        self,
        settings: WorkerSettings,
        source: Source,
        *,
        name: str,
        topics: list[str],
        start_from: str = "earliest",
    ) -> None:
        self.settings = settings
        self.source = source
        self.name = name
        self.topics = topics
        self.group = f"{settings.app_id}-{name}"
        self.state_topic = settings.topic(f"{name}-state")
        self.engines: dict[int, E] = {}
        self.emitted = 0
        self.undecodable = 0
        self._pending: dict[TopicPartition, int] = {}
        self._dirty: set[int] = set()
        bootstrap = settings.kafka_bootstrap_servers
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset=start_from,
            isolation_level="read_committed",
            fetch_max_wait_ms=50,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=max(300, settings.session_timeout_ms // 5),
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=f"{settings.app_id}-{name}-{settings.name}",
            enable_idempotence=True,
            linger_ms=0 if self.urgent else 5,
            max_request_size=_MAX_ENTRY,
            transaction_timeout_ms=15_000,
        )
        self._lock = asyncio.Lock()
        self._assign_lock = asyncio.Lock()
        self._next: dict[int, int] = {}  # partition → the next offset to feed

    # -- what a subclass provides --------------------------------------------------------

    @abstractmethod
    def new_engine(self) -> E: ...

    @abstractmethod
    def feed(self, engine: E, value: bytes | None, key: bytes | None) -> None:
        """One input record (decode it, update the engine, remember outputs)."""

    @abstractmethod
    def collect(self, engine: E, now_ms: int) -> list[Output]:
        """The outputs the engine has ready at ``now_ms`` (fed or due by the clock)."""

    @abstractmethod
    def changes(self, engine: E) -> dict[str, Any | None]:
        """State entries changed since the last call (``None`` deletes one)."""

    @abstractmethod
    def load(self, engine: E, entries: dict[str, Any]) -> None:
        """Rebuild ``engine`` from its partition's state entries."""

    def decoded(self, value: bytes | None) -> Envelope | None:
        """A contract record, or None (counted) when it does not decode: the ingest
        stage sends those to errorflow.poison, so a stage skips them."""
        try:
            return decode(value or b"")
        except DecodeError:
            self.undecodable += 1
            return None

    def touch(self, partition: int) -> None:
        """Mark a partition's engine as changed by something other than its input (a
        control record), so the next checkpoint writes its state."""
        self._dirty.add(partition)

    async def background(self, stop: asyncio.Event) -> None:
        """Side work running alongside the stage (e.g. following the control topic)."""
        await stop.wait()

    # -- the Kafka part ------------------------------------------------------------------

    def internal_topics(self) -> list[NewTopic]:
        return [
            NewTopic(
                self.state_topic,
                self.settings.internal_partitions,
                1,
                # One entry (e.g. a task's record with its task data) may exceed the
                # 1 MB default; a checkpoint must never fail on size.
                topic_configs={"cleanup.policy": "compact", "max.message.bytes": str(_MAX_ENTRY)},
            )
        ]

    async def run(self, stop: asyncio.Event) -> None:
        await self._producer.start()
        await self._consumer.start()
        side = asyncio.create_task(self.background(stop))
        try:
            self._consumer.subscribe(self.topics, listener=_Listener(self))
            next_tick = time.monotonic()
            while not stop.is_set():
                batch = await self._consumer.getmany(timeout_ms=50, max_records=5000)
                for tp, records in batch.items():
                    engine = self.engines.get(tp.partition)
                    if engine is None:
                        # Assigned but not restored yet (aiokafka fetches before the
                        # listener runs, and swallows a listener's exception).
                        if tp not in self._consumer.assignment():
                            continue  # revoked meanwhile
                        await self.take_over([tp])
                        engine = self.engines.get(tp.partition)
                        if engine is None:
                            continue
                    self._feed(tp, engine, records)
                if (batch and self._news()) or time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.settings.tick_s
                    await self.checkpoint()
            await self.checkpoint()
        finally:
            side.cancel()
            await self._consumer.stop()
            await self._producer.stop()

    def _news(self) -> bool:
        return any(self.has_news(engine) for engine in self.engines.values())

    def has_news(self, engine: E) -> bool:
        """Whether ``engine`` has outputs to send now rather than at the next tick; an
        urgent stage answers (a checkpoint is a transaction: one per fetched batch cost
        the worker several per cent under load)."""
        return False

    def _feed(self, tp: TopicPartition, engine: E, records: list[Any]) -> None:
        """Feed records at or past the partition's next offset. The fetcher may hand
        over a batch fetched before our seek to the committed offset and then the same
        records again after it; each offset counts once."""
        expected = self._next.get(tp.partition, 0)
        fresh = [r for r in records if r.offset >= expected]
        if not fresh:
            return
        for record in fresh:
            self.feed(engine, record.value, record.key)
        self._next[tp.partition] = fresh[-1].offset + 1
        self._pending[tp] = fresh[-1].offset + 1
        self._dirty.add(tp.partition)

    async def take_over(self, assigned: list[TopicPartition]) -> None:
        """Restore the engines of ``assigned`` partitions that have none and position
        them at their committed offsets — once, whether the rebalance listener or the
        fetch loop gets there first. The seek comes first and the engine is installed
        last, so no record is fed to an engine before its next offset is known."""
        async with self._assign_lock:
            fresh = [tp for tp in assigned if tp.partition not in self.engines]
            if fresh:
                starts = await self.start_at_committed(fresh)
                await self.restore([tp.partition for tp in fresh])
                for tp, offset in starts.items():
                    self._next[tp.partition] = offset

    async def checkpoint(self) -> None:
        """Outputs, changed state and consumed offsets, in one transaction."""
        async with self._lock:
            now_ms = int(time.time() * 1000)
            outputs: list[Output] = []
            for partition, engine in self.engines.items():
                ready = self.collect(engine, now_ms)
                if ready:
                    outputs.extend(ready)
                    self._dirty.add(partition)
            # Encoded now, before the first await: engines may change while we send, and
            # changes() may hand out live objects (the recovery engine does).
            state = [
                (f"{partition}/{key}".encode(), None if value is None else _encode(value))
                for partition in sorted(self._dirty)
                if partition in self.engines
                for key, value in self.changes(self.engines[partition]).items()
            ]
            if not outputs and not state and not self._pending:
                self._dirty.clear()
                return
            async with self._producer.transaction():
                for out in outputs:
                    headers = [("type", out.type)] if out.type else []
                    await self._producer.send(out.topic, out.value, key=out.key, headers=headers)
                for key, body in state:
                    await self._producer.send(self.state_topic, body, key=key)
                if self._pending:
                    await self._producer.send_offsets_to_transaction(
                        dict(self._pending), self.group
                    )
            self.emitted += len(outputs)
            self._pending.clear()
            self._dirty.clear()

    async def restore(self, partitions: list[int]) -> None:
        """Engines for newly assigned partitions, from their committed state entries."""
        entries = await self._read_state(set(partitions))
        log.info(
            "errorflow.worker.restored stage=%s partitions=%s entries=%d",
            self.name,
            partitions,
            sum(len(v) for v in entries.values()),
        )
        for partition in partitions:
            engine = self.new_engine()
            self.load(engine, entries.get(partition, {}))
            self.changes(engine)  # what was just loaded is not a change
            self.engines[partition] = engine

    async def start_at_committed(self, assigned: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Position each partition at its committed offset, the one its restored state
        matches. (Without this explicit seek a worker restarted after SIGKILL was seen
        never fetching the records written after its predecessor's last commit.) A
        partition never committed gets its starting position committed, so a restart
        resumes where the first run began, not at a later "latest". Returns where each
        partition starts."""
        fresh, starts = {}, {}
        for tp in assigned:
            committed = await self._consumer.committed(tp)
            if committed is not None:
                self._consumer.seek(tp, committed)
                starts[tp] = committed
            else:
                fresh[tp] = starts[tp] = await self._consumer.position(tp)
        if fresh:
            await self._consumer.commit(fresh)
        return starts

    async def _read_state(self, wanted: set[int]) -> dict[int, dict[str, Any]]:
        entries: dict[int, dict[str, Any]] = {}
        for record in await read_to_end(self.settings.kafka_bootstrap_servers, self.state_topic):
            partition_text, _, key = record.key.decode().partition("/")
            partition = int(partition_text)
            if partition not in wanted:
                continue
            mine = entries.setdefault(partition, {})
            if record.value is None:
                mine.pop(key, None)
            else:
                mine[key] = json.loads(record.value)
        return entries
