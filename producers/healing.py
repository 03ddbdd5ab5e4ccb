"""The runner's side of self-healing: ``healing.action`` for this worker → run it →
``healing.result`` (done / failed / skipped, with details) on ``errorflow.heartbeats``.

One consumer group per worker (``<command_group>.healing.<worker_id>``) reads the
healing commands; only those addressed to this worker are acted on, each once (the
command ledger). A command past its ``expires_at`` is never run — reported ``skipped``
— so a runner starting cold does not replay old actions. Actions:

- ``throttle_processing``: at most ``concurrency`` tasks at once (or the running count
  × ``concurrency_factor``) for ``duration_s``, then restored (reported again);
- ``clear_caches`` / ``archive_old_files``: only in the configured directories
  (:mod:`healing.actions`; symlinks never followed);
- ``restart_worker``: stop taking tasks, drain the running ones (``healing_drain_s``),
  then the ``restart_worker`` hook if registered, else exit with
  ``healing_restart_exit_code`` (75) for the supervisor to restart the process;
- ``scale_resources``, ``reload_model``: user hooks (``register_healing_hook``);
  without one, ``skipped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer

from producers.invoke import call_user_function
from producers.ledger import CommandLedger
from producers.logs import sdk_logger
from schemas import DecodeError, HealingResult, RunHealingAction, decode
from schemas.topics import HEALING_COMMANDS

if TYPE_CHECKING:
    from producers.handler import ErrorHandler

__all__ = ["HealingListener"]

log = sdk_logger("errorflow.healing")
HOOKED = ("scale_resources", "reload_model")


class HealingListener:
    ledger_name = "healing"

    def __init__(self, handler: ErrorHandler) -> None:
        self.handler = handler
        config = handler.config
        self.ledger = CommandLedger(
            config.data_dir / "ledger" / f"{config.runner_id}.{self.ledger_name}.jsonl"
        )
        self.counters = {"done": 0, "failed": 0, "skipped": 0}
        self._task: asyncio.Task[None] | None = None
        self._restore: asyncio.Task[None] | None = None
        #: Set once the consumer holds its partitions (positioned at "latest").
        self.ready = asyncio.Event()

    @property
    def worker_id(self) -> str:
        source = self.handler.source
        return source.worker_id or source.runner_id

    async def start(self) -> None:
        self._task = asyncio.create_task(self._forever(), name="errorflow-healing")

    async def stop(self) -> None:
        for task in (self._task, self._restore):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _forever(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect, never crash the runner
                log.warning("errorflow.healing.consumer_failed error=%r", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    @property
    def group_id(self) -> str:
        return f"{self.handler.config.command_group}.healing.{self.worker_id}"

    def accepts(self, command: RunHealingAction) -> bool:
        """Actions for this worker; a restart for the supervisor is another process's."""
        return command.worker_id == self.worker_id and not command.for_supervisor

    async def _consume(self) -> None:
        config = self.handler.config
        consumer = AIOKafkaConsumer(
            HEALING_COMMANDS.name,
            bootstrap_servers=config.kafka_bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            isolation_level="read_committed",
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100, max_records=1)
            for tp in consumer.assignment():
                await consumer.position(tp)
            self.ready.set()
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=20)
                for tp, records in batch.items():
                    for record in records:
                        await self.handle(record.value)
                        await consumer.commit({tp: record.offset + 1})
        finally:
            await consumer.stop()

    async def handle(self, raw: bytes | None) -> None:
        try:
            command = decode(raw or b"")
        except DecodeError:
            return
        if not isinstance(command, RunHealingAction) or not self.accepts(command):
            return
        if command.command_id in self.ledger:
            return
        self.ledger.add(command.command_id)
        if command.params.get("dry_run"):
            self._answer(command, "skipped", {"why": "dry-run: the stream worker only reports"})
            return
        if command.expires_at < datetime.now(UTC):
            self._answer(
                command, "skipped", {"why": "expired", "expires_at": command.expires_at.isoformat()}
            )
            return
        try:
            status, details = await self._run(command)
        except Exception as exc:  # noqa: BLE001 - reported as failed, the runner goes on
            status, details = "failed", {"error": f"{type(exc).__name__}: {exc}"}
        self._answer(command, status, details)

    async def _run(self, command: RunHealingAction) -> tuple[str, dict[str, Any]]:
        from healing.actions import archive_old_files, clear_caches

        handler, params, config = self.handler, command.params, self.handler.config
        action = command.action
        if action == "throttle_processing":
            return self._throttle(command)
        if action == "clear_caches":
            return clear_caches(config.healing_cache_dirs)
        if action == "archive_old_files":
            target = config.healing_archive_to or config.data_dir / "archive"
            days = float(params.get("older_than_days", 7))
            return await asyncio.to_thread(
                archive_old_files, config.healing_archive_dirs, target, older_than_days=days
            )
        if action == "restart_worker":
            return await self._restart(command)
        if action in HOOKED:
            hook = handler.healing_hooks.get(action)
            if hook is None:
                return "skipped", {"why": f"no {action} hook registered on this runner"}
            result = await call_user_function(hook, params)
            return "done", {"hook": getattr(hook, "__name__", action), "result": repr(result)[:500]}
        return "skipped", {"why": f"unknown action {action!r}"}

    def _throttle(self, command: RunHealingAction) -> tuple[str, dict[str, Any]]:
        gate, params = self.handler.gate, command.params
        duration = float(params.get("duration_s", 300))
        limit = params.get("concurrency")
        if not isinstance(limit, int):
            factor = float(params.get("concurrency_factor", 0.5))
            limit = max(1, int(max(gate.running, 1) * factor))
        previous = gate.limit
        gate.set(limit=limit)
        if self._restore is not None:
            self._restore.cancel()

        async def restore() -> None:
            await asyncio.sleep(duration)
            gate.set(limit=previous)
            self._answer(command, "done", {"restored": True, "limit": previous})

        self._restore = asyncio.create_task(restore(), name="errorflow-throttle-restore")
        return "done", {"limit": limit, "duration_s": duration, "previous_limit": previous}

    async def _restart(self, command: RunHealingAction) -> tuple[str, dict[str, Any]]:
        handler, config = self.handler, self.handler.config
        handler.gate.set(limit=handler.gate.limit, closed=True)  # no new tasks
        drained = await handler.gate.drained(config.healing_drain_s)
        hook = handler.healing_hooks.get("restart_worker")
        if hook is not None:
            await call_user_function(hook, command.params)
            handler.gate.set(limit=handler.gate.limit, closed=False)
            return "done", {"drained": drained, "via": "hook"}
        code = config.healing_restart_exit_code
        self._answer(command, "done", {"drained": drained, "exit_code": code})
        await handler.publisher.close(timeout_s=10)  # the result and everything before it
        log.warning("errorflow.healing.exiting code=%d (restart_worker)", code)
        os._exit(code)

    def _answer(self, command: RunHealingAction, status: str, details: dict[str, Any]) -> None:
        self.counters[status] = self.counters.get(status, 0) + 1
        self.handler.emit(
            HealingResult,
            command_id=command.command_id,
            worker_id=command.worker_id,
            action=command.action,
            status=status,
            details=details,
        )
        log.info(
            "errorflow.healing.result action=%s status=%s command_id=%s",
            command.action,
            status,
            command.command_id,
        )
