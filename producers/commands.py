"""The runner acting on commands from the streams.

Two consumers run in the background:

- breaker state: reads all of the compacted ``errorflow.breaker-state`` (no group,
  from the beginning) and merges each service's fleet state into the local breaker;
- commands: one consumer group for the fleet on ``errorflow.recovery-commands`` and
  ``errorflow.compensation-commands``. Each command is handled, then its offset is
  committed (at least once); the persisted ledger makes a repeat harmless.

Neither ever stops the runner: a missing broker is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer

from producers.invoke import call_user_function
from producers.ledger import CommandLedger
from producers.logs import sdk_logger
from producers.reporting import error_info
from schemas import (
    BreakerStateChanged,
    CompensateOperation,
    CompensationCompleted,
    CompensationFailed,
    DecodeError,
    Envelope,
    ResetBreaker,
    RetryTask,
    decode,
)
from schemas.topics import BREAKER_STATE, COMPENSATION_COMMANDS, CONTROL, RECOVERY_COMMANDS

if TYPE_CHECKING:
    from producers.handler import ErrorHandler

__all__ = ["CommandListener"]

log = sdk_logger("errorflow.commands")


class CommandListener:
    def __init__(self, handler: ErrorHandler, *, max_command_age_s: float = 3600.0) -> None:
        self.handler = handler
        self.ledger = CommandLedger(handler.config.ledger_path)
        self.max_command_age_s = max_command_age_s
        self.counters = {
            "resets": 0,
            "handled": 0,
            "duplicates": 0,
            "stale": 0,
            "undecodable": 0,
            "no_executor": 0,
            "breaker_updates": 0,
        }
        self._tasks: list[asyncio.Task[None]] = []
        self._joined: set[str] = set()
        self._consumers: dict[str, AIOKafkaConsumer] = {}
        self._handled_to: dict[tuple[str, Any], int] = {}  # (group, partition) → next

    def routes(self) -> list[tuple[str, str, str]]:
        """(consumer group, topic, what it serves) for every command this runner can act
        on: one group per template it has an executor for, one per operation kind it has
        a compensator for. Runners join only the groups of what they can run, so a
        command always reaches a runner able to handle it (in the group of its template
        or kind, exactly one member takes it); a runner never takes and drops another
        template's retry. Executors registered by operation type alone are used for the
        templates this runner serves, and join no group of their own. Commands that no
        runner takes are dead-lettered by the stream worker after
        ``ERRORFLOW_WORKER_COMMAND_MAX_WAIT_S`` (never lost)."""
        base = self.handler.config.command_group
        templates = sorted({t for t, _ in self.handler.executors if t is not None})
        kinds = sorted(self.handler.compensators)
        return [
            *((f"{base}.retry.{t}", RECOVERY_COMMANDS.name, t) for t in templates),
            *((f"{base}.compensate.{k}", COMPENSATION_COMMANDS.name, k) for k in kinds),
        ]

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._forever(self._breaker_states), name="errorflow-breaker-state")
        ]
        self.refresh()

    def refresh(self) -> None:
        """Join the groups of routes not joined yet (an executor registered after start)."""
        for route in self.routes():
            if route[0] in self._joined:
                continue
            self._joined.add(route[0])
            self._tasks.append(
                asyncio.create_task(
                    self._forever(lambda r=route: self._commands(*r)),
                    name=f"errorflow-commands-{route[0]}",
                )
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._joined.clear()

    async def _forever(self, loop: Any) -> None:
        delay = 0.5
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect, never crash the runner
                log.warning("errorflow.commands.consumer_failed", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _consumer(self, **options: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.handler.config.kafka_bootstrap_servers,
            fetch_max_wait_ms=100,
            **options,
        )

    # -- breaker state -----------------------------------------------------------------

    async def _breaker_states(self) -> None:
        # No group: aiokafka then assigns every partition to this consumer, and with no
        # committed offsets "earliest" reads the whole compacted topic on every start.
        consumer = self._consumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # the streams write it in transactions
        )
        await consumer.start()
        try:
            # The control topic too: a fleet breaker.reset closes this runner's local
            # breaker as well (it was still rejecting calls "retry after 295 s").
            consumer.subscribe([BREAKER_STATE.name, CONTROL.name])
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        self._apply_breaker_state(record.value)
        finally:
            await consumer.stop()

    def _apply_breaker_state(self, raw: bytes | None) -> None:
        if raw is None:
            return  # a compaction tombstone
        event = self._decode(raw)
        if isinstance(event, ResetBreaker):
            age = (datetime.now(UTC) - event.occurred_at).total_seconds()
            # Old resets on the compacted topic were applied long ago: not at each start.
            if age <= self.handler.config.cluster_state_max_age_s:
                self.handler.circuit_breakers.reset(event.service)
                self.counters["resets"] += 1
            return
        if isinstance(event, BreakerStateChanged):
            age = (datetime.now(UTC) - event.occurred_at).total_seconds()
            if age > self.handler.config.cluster_state_max_age_s:
                self.counters["stale"] += 1
                return
            self.counters["breaker_updates"] += 1
            # Optional fields of breaker.state (streams/breakers/records.py: breaker_event).
            probers = event.probe_workers or []
            budget = event.retry_budget or {}
            source = self.handler.source
            breaker = self.handler.circuit_breakers.get(event.service)
            may_probe = not probers or (source.worker_id or source.runner_id) in probers
            # Both holds are leases, so a stream that is gone (or a state left on the
            # compacted topic by an earlier deployment) cannot stop a fleet: an OPEN holds
            # for twice the fleet's recovery timeout since it opened (once for the
            # stream's half-open timer, once as grace); a HALF_OPEN naming other probers
            # for twice the timeout since it named them (a live stream names new probers
            # after one timeout without a probe — these may be long gone).
            timeout = 2 * float(event.recovery_timeout_s or breaker.config.recovery_timeout)
            now = datetime.now(UTC)
            lease = None
            if event.state == "open":
                lease = timeout - (now - event.since).total_seconds()
            elif event.state == "half_open" and not may_probe:
                lease = timeout - (now - event.occurred_at).total_seconds()
            breaker.apply_cluster_state(
                event.state,
                reason=event.reason,
                may_probe=may_probe,
                budget_spent=bool(budget.get("exhausted")),
                open_for_s=lease,
            )

    # -- commands ----------------------------------------------------------------------

    async def _commands(self, group: str, topic: str, serves: str) -> None:
        consumer = self._consumer(
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # The streams send commands in transactions: never act on an aborted one.
            isolation_level="read_committed",
        )
        await consumer.start()
        self._consumers[group] = consumer
        try:
            consumer.subscribe([topic])
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=50)
                for tp, records in batch.items():
                    for record in records:
                        await self._handle(record.value, serves)
                        await consumer.commit({tp: record.offset + 1})
                        self._handled_to[(group, tp)] = record.offset + 1
        finally:
            self._consumers.pop(group, None)
            await consumer.stop()

    def lag(self) -> int:
        """Command records this runner has not read yet: on the partitions its command
        groups hold, the end minus where it is. A group reads its whole topic (commands
        for other templates are skipped, quickly), so this counts those too; growing, it
        says the runner falls behind (heartbeats carry it: part of a queue backlog)."""
        waiting = 0
        for group, consumer in list(self._consumers.items()):
            for tp in consumer.assignment():
                end, done = consumer.last_stable_offset(tp), self._handled_to.get((group, tp))
                if end is not None and done is not None:
                    waiting += max(0, end - done)
        return waiting

    def _decode(self, raw: bytes | None) -> Envelope | None:
        if raw is None:
            return None
        try:
            return decode(raw)
        except DecodeError as exc:
            self.counters["undecodable"] += 1
            log.warning("errorflow.commands.undecodable", extra={"reason": exc.reason})
            return None

    async def _handle(self, raw: bytes | None, serves: str | None = None) -> None:
        """Act on one command of this route (``serves``: its template or operation kind;
        another route's commands are that group's business)."""
        command = self._decode(raw)
        if not isinstance(command, RetryTask | CompensateOperation):
            return  # queued / dead-lettered / fail-fast are for dashboards, not runners
        mine = command.template_id if isinstance(command, RetryTask) else command.operation_kind
        if serves is not None and mine != serves:
            return
        if command.command_id in self.ledger:
            self.counters["duplicates"] += 1
            return
        now = datetime.now(UTC)
        expires = command.expires_at
        age = (now - command.occurred_at).total_seconds()
        if (expires is not None and expires < now) or age > self.max_command_age_s:
            self.counters["stale"] += 1
            self.ledger.add(command.command_id)
            return
        if isinstance(command, RetryTask):
            await self._retry(command)
        else:
            await self._compensate(command)

    async def _retry(self, command: RetryTask) -> None:
        handler = self.handler
        executor = handler.executor_for(command.template_id, command.operation_type)
        if executor is None:
            self.counters["no_executor"] += 1
            log.error(
                "errorflow.commands.no_executor",
                extra={
                    "template_id": command.template_id,
                    "operation_type": command.operation_type,
                },
            )
            return
        wait = (command.not_before - datetime.now(UTC)).total_seconds()
        if wait > 0:
            await handler.clock.sleep(wait)
        # Recorded before running: a retry that crashes the runner must not loop forever;
        # the streams see the missing outcome and decide again.
        self.ledger.add(command.command_id)
        self.counters["handled"] += 1
        with contextlib.suppress(Exception):  # the outcome is published as task events
            await handler.wrap_task_execution(
                task_id=command.task_id,
                template_id=command.template_id,
                operation_type=command.operation_type,
                task_data=command.task_data,
                execute_func=executor,
                attempt=command.attempt,
            )

    async def _compensate(self, command: CompensateOperation) -> None:
        handler = self.handler
        compensator = handler.compensators.get(command.operation_kind)
        base = {
            "task_id": command.task_id,
            "operation_id": command.operation_id,
            "command_id": command.command_id,
        }
        if compensator is None:
            handler.emit(
                CompensationFailed,
                **base,
                error=None,
                reason=f"no compensator registered for {command.operation_kind!r}",
            )
            return
        try:
            await call_user_function(compensator, command.data)
        except Exception as exc:
            verdict = handler.classifier.classify(exc)
            handler.emit(CompensationFailed, **base, error=error_info(exc, verdict, None))
            return
        # Persisted after the compensator ran and before the result is published: a
        # crash in between re-runs the compensator at most once more (compensators
        # should be idempotent); a duplicate command is dropped.
        self.ledger.add(command.command_id)
        self.counters["handled"] += 1
        handler.emit(CompensationCompleted, **base)
