"""A consumer-group stage whose per-partition state is exactly once with its outputs.

Each assigned input partition gets an engine (pure state, see the subclasses). Every
checkpoint — after a batch with news when the stage is urgent, else every ``tick_s`` —
collects the engines' due outputs and writes them, the engines' changed state entries
and the consumed offsets in one Kafka transaction. State entries go to a compacted
changelog topic keyed ``<partition>/<key>`` (a tombstone deletes one), so a checkpoint
writes only what changed. On assignment an engine is rebuilt from that changelog, which
matches the committed offset exactly: a SIGKILL or a rebalance loses and repeats nothing.

Failure: every send of a transaction is confirmed before its offsets go in. A send or a
commit that fails aborts the transaction, and the stage starts a new session — new
clients (the transactional id fences the old producer), engines rebuilt from the
changelog, positions from the committed offsets — so a batch whose outputs did not land
is processed again, never skipped. (Before, unconfirmed sends let a broker restart's
``OutOfOrderSequenceNumber`` commit offsets whose outputs were lost.)

This is the Kafka Streams state-store recipe, owned here instead of Faust's tables
(README, "Why not Faust"). Nothing here imports errorflow's domain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from streams.engine.follow import read_to_end

__all__ = ["EngineSettings", "EngineStage", "Output", "StageFailure"]

log = logging.getLogger("errorflow.worker.stage")

E = TypeVar("E")
Record: TypeAlias = ConsumerRecord[bytes, bytes]
_MAX_ENTRY = 8 << 20


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """What the engine needs of the worker's settings (read once at process entry)."""

    bootstrap: str
    app_id: str
    name: str  # stable per process: the transactional id, so a restart fences its predecessor
    session_timeout_ms: int = 6000
    tick_s: float = 0.5
    internal_partitions: int = 6
    max_records: int = 5000
    transaction_timeout_ms: int = 15_000


@dataclass(frozen=True, slots=True)
class Output:
    """One record a checkpoint writes (``partition`` set: to that partition, else by key)."""

    topic: str
    key: bytes | None
    value: bytes
    type: bytes | None = None
    partition: int | None = None


class StageFailure(Exception):
    """A checkpoint did not land (a send, the offsets or the commit failed); the stage
    restarts from its committed state. ``cause`` is the Kafka error."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"stage {stage}: checkpoint failed: {type(cause).__name__}: {cause}")
        self.stage = stage
        self.cause = cause


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka swallows a listener's exceptions, so failures are parked on the stage for
    its loop to raise."""

    def __init__(self, stage: EngineStage[Any]) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        stage = self.stage
        if stage.broken is None:
            # A failure is parked on stage.broken; the loop restarts the session.
            with contextlib.suppress(StageFailure):
                await stage.checkpoint()
        for tp in revoked:
            stage.engines.pop(tp, None)
            stage._next.pop(tp, None)
            stage._pending.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            await self.stage.take_over(assigned)
        except KafkaError as exc:
            self.stage.broken = exc
            return
        log.info(
            "errorflow.worker.assigned stage=%s partitions=%s",
            self.stage.name,
            sorted((tp.topic, tp.partition) for tp in assigned),
        )


class EngineStage(ABC, Generic[E]):
    """Subclasses say what to build, feed and collect; this class owns the Kafka part.

    Lifecycle: :meth:`run` opens a session (clients, subscription); on assignment
    :meth:`load` rebuilds each partition's engine; :meth:`feed` gets every record once,
    in offset order, and must not block or do I/O; at each checkpoint :meth:`collect`
    and :meth:`changes` say what to write, and the writes, the state and the offsets
    commit together. A failed checkpoint discards every engine and starts a new session.
    """

    #: Checkpoint right after a batch that fed something (low latency), not only per tick.
    urgent = False
    linger_ms = 5

    def __init__(
        self,
        settings: EngineSettings,
        *,
        name: str,
        topics: list[str],
        start_from: str = "earliest",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine_settings = settings
        self.name = name
        self.topics = topics
        self.start_from = start_from
        self.clock = clock
        self.group = f"{settings.app_id}-{name}"
        self.state_topic = f"{settings.app_id}-{name}-state"
        self.engines: dict[TopicPartition, E] = {}
        self.emitted = 0
        self.aborts = 0
        self.undecodable = 0
        self.broken: BaseException | None = None
        self._pending: dict[TopicPartition, int] = {}
        self._dirty: set[TopicPartition] = set()
        self._soon = False
        self._next: dict[TopicPartition, int] = {}  # the next offset to feed
        self._lock = asyncio.Lock()
        self._assign_lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    # -- what a subclass provides --------------------------------------------------------

    @abstractmethod
    def new_engine(self, tp: TopicPartition) -> E: ...

    @abstractmethod
    def feed(self, engine: E, record: Record) -> None:
        """One input record (decode it, update the engine, remember outputs)."""

    @abstractmethod
    def collect(self, engine: E, now_ms: int) -> list[Output]:
        """The outputs the engine has ready at ``now_ms`` (fed or due by the clock)."""

    def changes(self, engine: E) -> dict[str, Any | None]:
        """State entries changed since the last call (``None`` deletes one). A stage
        with state reads one topic: entries are keyed by partition number."""
        return {}

    def load(self, engine: E, entries: dict[str, Any]) -> None:
        """Rebuild ``engine`` from its partition's state entries."""

    def has_news(self, engine: E) -> bool:
        """Whether ``engine`` has outputs to send now rather than at the next tick; an
        urgent stage answers (a checkpoint is a transaction: one per fetched batch cost
        the worker several per cent under load)."""
        return False

    def collect_all(self, now_ms: int) -> list[Output]:
        """Every engine's outputs; a stage may combine them across partitions."""
        outputs: list[Output] = []
        for tp, engine in self.engines.items():
            ready = self.collect(engine, now_ms)
            if ready:
                outputs.extend(ready)
                self._dirty.add(tp)
        return outputs

    async def background(self, stop: asyncio.Event) -> None:
        """Side work running alongside the stage (e.g. following the control topic).
        It is restarted when it fails; several followers each go through :meth:`keep`."""
        await stop.wait()

    async def keep(
        self,
        name: str,
        work: Callable[[asyncio.Event], Awaitable[None]],
        stop: asyncio.Event,
        *,
        first_delay_s: float = 0.5,
    ) -> None:
        """Run ``work`` until ``stop``, again after each failure (backoff up to 10 s). A
        follower started while the broker is away fails to connect; without this it
        stayed dead, and the stage never heard of a breaker or a threshold again."""
        delay = first_delay_s
        while not stop.is_set():
            try:
                await work(stop)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged, then tried again
                log.warning(
                    "errorflow.worker.follower_failed stage=%s follower=%s retry_in_s=%.1f "
                    "error=%s: %s",
                    self.name,
                    name,
                    delay,
                    type(exc).__name__,
                    exc,
                )
                delay = await _pause(stop, delay)

    def touch(self, tp: TopicPartition) -> None:
        """Mark a partition's engine as changed by something other than its input (a
        control record): the loop checkpoints its state and outputs at once."""
        self._dirty.add(tp)
        self._soon = True

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- the Kafka part ------------------------------------------------------------------

    def internal_topics(self) -> list[NewTopic]:
        return [
            NewTopic(
                self.state_topic,
                self.engine_settings.internal_partitions,
                1,
                # One entry (e.g. a task's record with its task data) may exceed the
                # 1 MB default; a checkpoint must never fail on size.
                topic_configs={"cleanup.policy": "compact", "max.message.bytes": str(_MAX_ENTRY)},
            )
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Sessions until ``stop``: a failed one is followed by a fresh one (backoff up to
        10 s), never by skipping what it had not committed."""
        side = asyncio.create_task(self.keep("background", self.background, stop))
        delay = 0.5
        try:
            while not stop.is_set():
                try:
                    await self._session(stop)
                    delay = 0.5
                except (KafkaError, StageFailure) as exc:
                    self.aborts += 1
                    log.warning(
                        "errorflow.worker.session_failed stage=%s aborts=%d retry_in_s=%.1f "
                        "error=%s: %s",
                        self.name,
                        self.aborts,
                        delay,
                        type(exc).__name__,
                        exc,
                    )
                    delay = await _pause(stop, delay)
        finally:
            side.cancel()

    def _clients(self) -> tuple[AIOKafkaConsumer, AIOKafkaProducer]:
        s = self.engine_settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset=self.start_from,
            isolation_level="read_committed",
            fetch_max_wait_ms=50,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=max(300, s.session_timeout_ms // 5),
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap,
            transactional_id=f"{s.app_id}-{self.name}-{s.name}",
            enable_idempotence=True,
            linger_ms=0 if self.urgent else self.linger_ms,
            max_request_size=_MAX_ENTRY,
            transaction_timeout_ms=s.transaction_timeout_ms,
        )
        return consumer, producer

    async def _session(self, stop: asyncio.Event) -> None:
        consumer, producer = self._clients()
        self._consumer, self._producer = consumer, producer
        self.broken = None
        try:
            await producer.start()
            await consumer.start()
            consumer.subscribe(self.topics, listener=_Listener(self))
            await self._loop(consumer, stop)
            await self.checkpoint()
        finally:
            # Whatever was not committed is forgotten here and read again next session.
            self.broken = self.broken or RuntimeError("session closed")
            self.engines.clear()
            self._next.clear()
            self._pending.clear()
            self._dirty.clear()
            for client in (consumer, producer):
                try:
                    await client.stop()
                except Exception as exc:  # a dead broker: closing must not mask the cause
                    log.debug("errorflow.worker.close_failed stage=%s: %s", self.name, exc)

    async def _loop(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        next_tick = time.monotonic()
        while not stop.is_set():
            batch = await consumer.getmany(
                timeout_ms=50, max_records=self.engine_settings.max_records
            )
            if self.broken is not None:
                raise StageFailure(self.name, self.broken)
            for tp, records in batch.items():
                engine = self.engines.get(tp)
                if engine is None:
                    # Assigned but not restored yet (aiokafka fetches before the
                    # listener runs, and swallows a listener's exception).
                    if tp not in consumer.assignment():
                        continue  # revoked meanwhile
                    await self.take_over([tp])
                    engine = self.engines.get(tp)
                    if engine is None:
                        continue
                self._feed(tp, engine, records)
            news = batch and self.urgent and any(map(self.has_news, self.engines.values()))
            if news or self._soon or time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.engine_settings.tick_s
                self._soon = False
                await self.checkpoint()

    def _feed(self, tp: TopicPartition, engine: E, records: list[Record]) -> None:
        """Feed records at or past the partition's next offset. The fetcher may hand
        over a batch fetched before our seek to the committed offset and then the same
        records again after it; each offset counts once."""
        expected = self._next.get(tp, 0)
        fresh = [r for r in records if r.offset >= expected]
        if not fresh:
            return
        for record in fresh:
            self.feed(engine, record)
        self._next[tp] = self._pending[tp] = fresh[-1].offset + 1
        self._dirty.add(tp)

    async def take_over(self, assigned: list[TopicPartition]) -> None:
        """Restore the engines of ``assigned`` partitions that have none and position
        them at their committed offsets — once, whether the rebalance listener or the
        fetch loop gets there first. The seek comes first and the engine is installed
        last, so no record is fed to an engine before its next offset is known."""
        async with self._assign_lock:
            fresh = [tp for tp in assigned if tp not in self.engines]
            if fresh:
                starts = await self.start_at_committed(fresh)
                await self.restore(fresh)
                self._next.update(starts)

    async def checkpoint(self) -> None:
        """Outputs, changed state and consumed offsets, in one transaction; every send
        confirmed before the offsets. Raises :class:`StageFailure` when it did not land
        (the engines are then ahead of what is committed, so the session must end)."""
        producer = self._producer
        if producer is None:
            return
        async with self._lock:
            if self.broken is not None:
                raise StageFailure(self.name, self.broken)
            outputs = self.collect_all(self.now_ms())
            # Encoded now, before the first await: engines may change while we send, and
            # changes() may hand out live objects (the recovery engine does).
            state = [
                (f"{tp.partition}/{key}".encode(), None if value is None else _encode(value))
                for tp in sorted(self._dirty)
                if tp in self.engines
                for key, value in self.changes(self.engines[tp]).items()
            ]
            pending = dict(self._pending)
            self._dirty.clear()
            if not outputs and not state and not pending:
                return
            try:
                async with producer.transaction():
                    sent = []
                    for out in outputs:
                        headers = [("type", out.type)] if out.type else []
                        sent.append(
                            await producer.send(
                                out.topic,
                                out.value,
                                key=out.key,
                                partition=out.partition,
                                headers=headers,
                            )
                        )
                    for key, body in state:
                        sent.append(await producer.send(self.state_topic, body, key=key))
                    await asyncio.gather(*sent)
                    if pending:
                        await producer.send_offsets_to_transaction(pending, self.group)
            except Exception as exc:
                self.broken = exc
                raise StageFailure(self.name, exc) from exc
            self.emitted += len(outputs)
            for tp, offset in pending.items():
                if self._pending.get(tp) == offset:
                    del self._pending[tp]

    async def restore(self, tps: list[TopicPartition]) -> None:
        """Engines for newly assigned partitions, from their committed state entries."""
        entries = await self._read_state({tp.partition for tp in tps})
        log.info(
            "errorflow.worker.restored stage=%s partitions=%s entries=%d",
            self.name,
            sorted(tp.partition for tp in tps),
            sum(len(v) for v in entries.values()),
        )
        for tp in tps:
            engine = self.new_engine(tp)
            self.load(engine, entries.get(tp.partition, {}))
            self.changes(engine)  # what was just loaded is not a change
            self.engines[tp] = engine

    async def start_at_committed(self, assigned: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Position each partition at its committed offset, the one its restored state
        matches. (Without this explicit seek a worker restarted after SIGKILL was seen
        never fetching the records written after its predecessor's last commit.) A
        partition never committed gets its starting position committed, so a restart
        resumes where the first run began, not at a later "latest". Returns where each
        partition starts."""
        consumer = self._consumer
        if consumer is None:
            return {}
        fresh, starts = {}, {}
        for tp in assigned:
            committed = await consumer.committed(tp)
            if committed is not None:
                consumer.seek(tp, committed)
                starts[tp] = committed
            else:
                fresh[tp] = starts[tp] = await consumer.position(tp)
        if fresh:
            await consumer.commit(fresh)
        return starts

    async def _read_state(self, wanted: set[int]) -> dict[int, dict[str, Any]]:
        entries: dict[int, dict[str, Any]] = {}
        if not self.changes_state():
            return entries
        for record in await self.read_changelog():
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

    async def read_changelog(self) -> list[Record]:
        """Every committed record of the stage's changelog (a seam for broker-free tests)."""
        return await read_to_end(self.engine_settings.bootstrap, self.state_topic)

    def changes_state(self) -> bool:
        """Whether the stage keeps state (a stateless one has no changelog to read)."""
        return type(self).changes is not EngineStage.changes


async def _pause(stop: asyncio.Event, delay: float) -> float:
    """Wait ``delay`` seconds or until ``stop``; the next delay (doubled, at most 10 s)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
    return min(delay * 2, 10.0)
