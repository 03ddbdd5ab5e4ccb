"""The engine's Kafka half without a broker: an in-memory consumer and producer (as
arroyo's LocalBroker) check the ordering of seek, restore, feed and commit, and that a
failed send never lets its offsets commit."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from streams.engine import EngineSettings, EngineStage, Output

TOPIC = "in"
TP = TopicPartition(TOPIC, 0)


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Log:
    """The 'broker': topics as lists, committed offsets, and a changelog."""

    def __init__(self) -> None:
        self.topics: dict[str, list[Rec]] = defaultdict(list)
        self.committed: dict[TopicPartition, int] = {}
        self.fail_next_send = False
        self.events: list[str] = []

    def append(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        records = self.topics[topic]
        records.append(Rec(topic, 0, len(records), key, value))


class FakeConsumer:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.positions: dict[TopicPartition, int] = {}
        self.listener: Any = None
        self._assigned: set[TopicPartition] = set()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    def assignment(self) -> set[TopicPartition]:
        return self._assigned

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.log.committed.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.log.events.append(f"seek {offset}")
        self.positions[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.positions.setdefault(tp, 0)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.committed.update(offsets)

    def last_stable_offset(self, tp: TopicPartition) -> int:
        return len(self.log.topics[tp.topic])

    def last_poll_timestamp(self, tp: TopicPartition) -> int:
        return 0

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.log.topics[tp.topic])

    async def getmany(self, timeout_ms: int = 0, max_records: int = 0) -> dict[Any, list[Rec]]:
        if not self._assigned:
            self._assigned = {TP}
            await self.listener.on_partitions_assigned([TP])
        await asyncio.sleep(0)
        start = self.positions.get(TP, 0)
        records = self.log.topics[TOPIC][start : start + 3]
        if records:
            self.positions[TP] = records[-1].offset + 1
        return {TP: records} if records else {}


class FakeProducer:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.staged: list[tuple[str, bytes | None, bytes | None]] = []
        self.offsets: dict[TopicPartition, int] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    @asynccontextmanager
    async def transaction(self) -> Any:
        self.staged, self.offsets = [], {}
        try:
            yield
        except BaseException:
            self.log.events.append("abort")
            raise
        for topic, key, value in self.staged:
            self.log.append(topic, key, value)
        self.log.committed.update(self.offsets)
        self.log.events.append(f"commit {self.offsets.get(TP)}")

    async def send(
        self, topic: str, value: bytes | None, key: bytes | None = None, **_: Any
    ) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.log.fail_next_send and topic == "out":
            self.log.fail_next_send = False
            future.set_exception(KafkaTimeoutError())
        else:
            self.staged.append((topic, key, value))
            future.set_result(None)
        return future

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, int], group: str
    ) -> None:
        self.log.events.append("offsets")
        self.offsets = dict(offsets)


class Summing(EngineStage[dict[str, int]]):
    """Sums the integer values it reads; emits the running total on every checkpoint."""

    urgent = True

    def __init__(self, log: Log) -> None:
        super().__init__(
            EngineSettings("fake", "app", "n", tick_s=0.01), name="sum", topics=[TOPIC]
        )
        self.log = log
        self.fed: list[int] = []

    def _clients(self) -> tuple[Any, Any]:
        return FakeConsumer(self.log), FakeProducer(self.log)

    async def read_changelog(self) -> list[Any]:
        return list(self.log.topics[self.state_topic])

    def new_engine(self, tp: TopicPartition) -> dict[str, int]:
        return {"total": 0, "dirty": 0}

    def feed(self, engine: dict[str, int], record: Any) -> None:
        self.fed.append(record.offset)
        engine["total"] += int(record.value)
        engine["dirty"] = 1

    def has_news(self, engine: dict[str, int]) -> bool:
        return bool(engine["dirty"])

    def collect(self, engine: dict[str, int], now_ms: int) -> list[Output]:
        if not engine["dirty"]:
            return []
        engine["dirty"] = 0
        return [Output("out", None, str(engine["total"]).encode())]

    def changes(self, engine: dict[str, int]) -> dict[str, Any]:
        return {"total": engine["total"]}

    def load(self, engine: dict[str, int], entries: dict[str, Any]) -> None:
        engine["total"] = entries.get("total", 0)


async def _run_until(stage: Summing, done: Any) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(stage.run(stop))
    for _ in range(2000):
        if done():
            break
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_outputs_state_and_offsets_commit_together_in_order() -> None:
    """Every record is fed once, in order; the last output is the true total; the
    committed offset is the end; offsets join the transaction after every send."""
    log = Log()
    for n in range(10):
        log.append(TOPIC, None, str(n).encode())
    stage = Summing(log)
    await _run_until(stage, lambda: log.committed.get(TP) == 10)
    assert stage.fed == list(range(10))
    assert int(log.topics["out"][-1].value) == sum(range(10))
    assert "abort" not in log.events
    assert json.loads(log.topics[stage.state_topic][-1].value) == sum(range(10))


async def test_a_failed_send_commits_nothing_and_the_batch_is_processed_again() -> None:
    """The first checkpoint's output send fails: its offsets do not commit; the stage
    restarts from the committed state (nothing), so every record still counts once."""
    log = Log()
    for n in range(10):
        log.append(TOPIC, None, str(n).encode())
    log.fail_next_send = True
    stage = Summing(log)
    stage.fed = []
    await _run_until(stage, lambda: log.committed.get(TP) == 10)
    assert log.events.index("abort") < log.events.index("commit 10")
    assert stage.aborts == 1
    assert int(log.topics["out"][-1].value) == sum(range(10))  # no record lost or doubled
    totals = [int(r.value) for r in log.topics["out"]]
    assert totals == sorted(totals)


async def test_a_restart_resumes_from_the_committed_offset_and_state() -> None:
    """A second stage on the same log restores the total from the changelog and seeks to
    the committed offset before feeding: new records add to the old total."""
    log = Log()
    for n in range(5):
        log.append(TOPIC, None, str(n).encode())
    first = Summing(log)
    await _run_until(first, lambda: log.committed.get(TP) == 5)
    for n in range(5, 8):
        log.append(TOPIC, None, str(n).encode())
    second = Summing(log)
    log.events.clear()
    await _run_until(second, lambda: log.committed.get(TP) == 8)
    assert log.events[0] == "seek 5"
    assert second.fed == [5, 6, 7]
    assert int(log.topics["out"][-1].value) == sum(range(8))


async def test_nothing_is_fed_before_the_partition_is_positioned() -> None:
    """The engine is installed only after the seek: no record is fed to it before."""
    log = Log()
    log.committed[TP] = 2
    for n in range(4):
        log.append(TOPIC, None, str(n).encode())
    stage = Summing(log)
    await _run_until(stage, lambda: log.committed.get(TP) == 4)
    assert stage.fed == [2, 3]


async def test_a_follower_that_fails_to_connect_is_started_again() -> None:
    """A side follower (control, breaker states) that fails — a broker away when the
    worker starts — runs again after a backoff instead of staying dead."""
    stage = Summing(Log())
    stop = asyncio.Event()
    attempts: list[int] = []

    async def follow(stop: asyncio.Event) -> None:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise KafkaTimeoutError("no broker")
        await stop.wait()

    task = asyncio.create_task(stage.keep("control", follow, stop, first_delay_s=0.01))
    for _ in range(500):
        if len(attempts) == 3:
            break
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert attempts == [0, 1, 2]
