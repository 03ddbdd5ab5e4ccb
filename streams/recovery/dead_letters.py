"""The dead letter queue: list what is there, replay what an operator picks.

``errorflow.dead-letter`` holds each dead-lettered task's full record. Selection is by
task id, fingerprint (of any of its errors) and time range; the newest letter of a task
wins. A replay emits ``recovery.retry`` with a fresh attempt series (attempt 1), a new
command id per replay run, and ``replay`` details (who, which run) in the command — the
sink keeps every command, so replays are audited. A task whose service's fleet breaker
is open is refused unless forced: replaying into an open breaker only dead-letters it
again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaProducer

from deploy.publish import send_event
from schemas import (
    BreakerStateChanged,
    DecodeError,
    RetryTask,
    Source,
    TaskDeadLettered,
    command_id,
    decode,
    utc_now,
)
from schemas.topics import BREAKER_STATE, DEAD_LETTER
from streams.engine.follow import read_to_end
from streams.recovery.records import command_event

__all__ = [
    "Selection",
    "plan_for",
    "plan_replay",
    "read_letters",
    "read_open_breakers",
    "replay",
]


@dataclass(frozen=True, slots=True)
class Selection:
    task_ids: frozenset[str] = frozenset()
    fingerprint: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def narrows(self) -> bool:
        """Whether anything is selected (a replay of everything must say ``all``)."""
        return bool(self.task_ids or self.fingerprint or self.since or self.until)

    def matches(self, letter: TaskDeadLettered) -> bool:
        if self.task_ids and letter.task_id not in self.task_ids:
            return False
        if self.fingerprint and all(e.fingerprint != self.fingerprint for e in letter.errors):
            return False
        if self.since and letter.occurred_at < self.since:
            return False
        return not (self.until and letter.occurred_at >= self.until)


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    replay: list[TaskDeadLettered]
    refused: list[tuple[TaskDeadLettered, str]]  # (letter, open service)


def services_of(letter: TaskDeadLettered) -> set[str]:
    return {e.service for e in letter.errors if e.service}


def plan_replay(
    letters: Iterable[TaskDeadLettered], open_services: set[str], *, force: bool
) -> ReplayPlan:
    """Which letters go out, and which are held back by an open breaker (pure)."""
    replay, refused = [], []
    for letter in letters:
        blocked = sorted(services_of(letter) & open_services)
        if blocked and not force:
            refused.append((letter, blocked[0]))
        else:
            replay.append(letter)
    return ReplayPlan(replay, refused)


async def plan_for(
    bootstrap: str, selection: Selection, *, force: bool
) -> tuple[list[TaskDeadLettered], ReplayPlan]:
    """The letters that match and what a replay of them would do now (the fleet
    breakers as they stand): what `errorflow dlq replay` and the API both start from."""
    letters = await read_letters(bootstrap, selection)
    return letters, plan_replay(letters, await read_open_breakers(bootstrap), force=force)


def replay_command(letter: TaskDeadLettered, run_id: str, who: str, source: Source) -> RetryTask:
    return command_event(
        RetryTask,
        command_id(letter.event_id, "replay", run_id),
        letter.event_id,
        int(time.time() * 1000),
        source,
        task_id=letter.task_id,
        template_id=letter.template_id,
        operation_type=letter.operation_type,
        attempt=1,
        not_before=utc_now(),
        task_data=letter.task_data,
        reason=f"replayed from the dead letter queue by {who}",
        replay={"run_id": run_id, "by": who, "dead_letter_event_id": letter.event_id},
    )


async def read_letters(bootstrap: str, selection: Selection) -> list[TaskDeadLettered]:
    """The newest letter of every task that matches, oldest first."""
    newest: dict[str, TaskDeadLettered] = {}
    for record in await read_to_end(bootstrap, DEAD_LETTER.name):
        try:
            letter = decode(record.value)
        except DecodeError:
            continue  # the sink's poison table has it
        if isinstance(letter, TaskDeadLettered):
            newest[letter.task_id] = letter
    chosen = [letter for letter in newest.values() if selection.matches(letter)]
    return sorted(chosen, key=lambda letter: letter.occurred_at)


async def read_open_breakers(bootstrap: str) -> set[str]:
    """Services whose latest fleet breaker state is not closed."""
    latest: dict[str, str] = {}
    for record in await read_to_end(bootstrap, BREAKER_STATE.name):
        if record.value is None:
            continue
        try:
            event = decode(record.value)
        except DecodeError:
            continue
        if isinstance(event, BreakerStateChanged):
            latest[event.service] = event.state
    return {service for service, state in latest.items() if state != "closed"}


async def replay(
    bootstrap: str,
    letters: list[TaskDeadLettered],
    *,
    who: str,
    rate_per_s: float,
    progress: Callable[[RetryTask], None] = lambda _: None,
) -> list[RetryTask]:
    """Send one ``recovery.retry`` per letter, at most ``rate_per_s`` a second."""
    run_id = uuid.uuid4().hex[:12]
    source = Source.here(runner_id="errorflow-dlq")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    sent = []
    try:
        gap = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        for letter in letters:
            started = time.monotonic()
            command = replay_command(letter, run_id, who, source)
            await send_event(producer, command)
            sent.append(command)
            progress(command)
            await asyncio.sleep(max(0.0, gap - (time.monotonic() - started)))
    finally:
        await producer.stop()
    return sent
