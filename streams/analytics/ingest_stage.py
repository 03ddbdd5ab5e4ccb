"""Stage 1: task and call events → partial counts and poison, exactly once.

Every record of ``errorflow.task-events`` and ``errorflow.call-events`` is judged here
by the contract (:mod:`streams.fastpath`, the codec's fast path): a record that does not
decode goes to ``errorflow.poison`` with topic, partition, offset and reason — this
stage is the only one that poisons these topics, and the other stages skip exactly the
records it poisons. Valid attempt ends are summed per (key, time bucket) across the
checkpoint's partitions; the partials, the source marks, the poison records and the
consumed offsets commit in one transaction of the engine (:mod:`streams.engine`).
"""

from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from schemas import DecodeError, PoisonRecorded, Source
from schemas.topics import CALL_EVENTS, TASK_EVENTS
from streams.analytics.partials import MARK_EVERY_MS, aggregate, encode_mark, encode_partial
from streams.engine import EngineStage, Output
from streams.engine.stage import Record
from streams.facts import Facts
from streams.fastpath import read_facts
from streams.ids import NAMESPACE
from streams.outputs import output_of
from streams.settings import WorkerSettings

__all__ = ["IngestStage", "Intake"]

log = logging.getLogger("errorflow.worker.ingest")
_FRESH_MS = 1000  # a fetch answered within this long vouches for "at the end"


@dataclass(slots=True)
class Intake:
    """What one input partition read since the last checkpoint."""

    tp: TopicPartition
    facts: list[Facts] = field(default_factory=list)
    poison: list[PoisonRecorded] = field(default_factory=list)
    newest_ms: int = 0  # since the last checkpoint
    latest_ms: int = 0  # ever (this session): what an idle mark repeats
    quiet_since_ms: int | None = None  # at the partition's end, nothing new since
    idle_said_ms: int = 0


class IngestStage(EngineStage[Intake]):
    urgent = True  # every fetched batch is one transaction: partials flow at once

    def __init__(self, settings: WorkerSettings, source: Source) -> None:
        super().__init__(
            settings.engine(),
            name="ingest",
            topics=[TASK_EVENTS.name, CALL_EVENTS.name],
            start_from=settings.start_from,
        )
        self.settings = settings
        self.source = source
        self.consumed = 0
        self.poisoned = 0
        self.partials_topic = settings.topic("partials")
        self._partials_partitions = settings.internal_partitions

    def internal_topics(self) -> list[NewTopic]:
        return [NewTopic(self.partials_topic, self.settings.internal_partitions, 1)]

    def new_engine(self, tp: TopicPartition) -> Intake:
        return Intake(tp)

    def feed(self, engine: Intake, record: Record) -> None:
        self.consumed += 1
        try:
            facts = read_facts(record.value)
        except DecodeError as exc:
            engine.poison.append(self._poison(engine.tp, record, exc.reason))
            return
        engine.quiet_since_ms = None
        if facts is not None:
            engine.facts.append(facts)
            engine.newest_ms = max(engine.newest_ms, facts.ts_ms)
            engine.latest_ms = max(engine.latest_ms, facts.ts_ms)

    def has_news(self, engine: Intake) -> bool:
        return bool(engine.facts or engine.poison)

    def collect(self, engine: Intake, now_ms: int) -> list[Output]:
        return []  # collect_all sums across partitions

    async def restore(self, tps: list[TopicPartition]) -> None:
        await super().restore(tps)
        if self._producer is not None:  # marks go to every partition the topic has
            found = await self._producer.partitions_for(self.partials_topic)
            self._partials_partitions = len(found)

    def collect_all(self, now_ms: int) -> list[Output]:
        """One sum over every partition's facts (fewer partial records than one sum per
        partition), then the marks — after the partials, so an engine never sees a mark
        before the counts it covers — then the poison."""
        facts: list[Facts] = []
        marks: list[Output] = []
        poison: list[Output] = []
        for intake in self.engines.values():
            facts.extend(intake.facts)
            value = self._mark(intake, now_ms)
            if value is not None:
                marks.extend(
                    Output(self.partials_topic, None, value, partition=p)
                    for p in range(self._partials_partitions)
                )
            poison.extend(output_of(record) for record in intake.poison)
            intake.facts, intake.poison, intake.newest_ms = [], [], 0
        partials = [
            Output(self.partials_topic, key.encode(), encode_partial(key, bucket, counts))
            for (key, bucket), counts in aggregate(facts, self.settings.step_ms).items()
        ]
        return [*partials, *marks, *poison]

    def _mark(self, intake: Intake, now_ms: int) -> bytes | None:
        """The partition's progress mark, if there is news: how far it was read, or —
        every MARK_EVERY_MS while it sits at its end with nothing new — that it is idle."""
        source = f"{intake.tp.topic}:{intake.tp.partition}"
        if intake.newest_ms:
            return encode_mark(source, intake.newest_ms)
        consumer = self._consumer
        end = polled = None
        if consumer is not None:
            end = consumer.last_stable_offset(intake.tp)
            polled = consumer.last_poll_timestamp(intake.tp)
        # Only a fresh answer from the broker says "nothing more": an end offset learnt
        # before an outage is stale (records produced since are invisible), so the
        # partition counts as quiet only from its next fetch after the outage on.
        fresh = polled is not None and now_ms - polled <= _FRESH_MS
        if end is None or not fresh or self._next.get(intake.tp, 0) < end:
            # Records wait (or may wait) to be read: say the partition is live, so an
            # engine that never heard of it (its records all unread, say after an
            # outage) holds its windows for it instead of closing them without it.
            intake.quiet_since_ms = None
            if now_ms - intake.idle_said_ms < MARK_EVERY_MS:
                return None
            intake.idle_said_ms = now_ms
            return encode_mark(source, intake.latest_ms)
        if intake.quiet_since_ms is None:
            intake.quiet_since_ms = now_ms
        if now_ms - intake.idle_said_ms < MARK_EVERY_MS:
            return None
        intake.idle_said_ms = now_ms
        # Said again every MARK_EVERY_MS: an engine trusts "idle" only while it is fresh.
        return encode_mark(source, intake.latest_ms, intake.quiet_since_ms, said_ms=now_ms)

    def _poison(self, tp: TopicPartition, record: Record, reason: str) -> PoisonRecorded:
        self.poisoned += 1
        if self.poisoned & (self.poisoned - 1) == 0:  # 1st, 2nd, 4th...: a flood stays quiet
            log.warning(
                "errorflow.worker.poison topic=%s partition=%d offset=%d poisoned=%d reason=%s",
                tp.topic,
                tp.partition,
                record.offset,
                self.poisoned,
                reason,
            )
        return PoisonRecorded(
            # From where it was read: a batch processed again yields the same id.
            event_id=str(
                uuid.uuid5(NAMESPACE, f"poison|{tp.topic}|{tp.partition}|{record.offset}")
            ),
            source=self.source,
            source_topic=tp.topic,
            partition=tp.partition,
            offset=record.offset,
            reason=reason,
            raw_base64=base64.b64encode(record.value or b"").decode(),
        )
