"""The runner's error handler: the API of the original design, over Kafka.

Lifecycle: build with :func:`~producers.dependencies.get_error_handler` (or
``ErrorHandler(config)`` then ``await handler.start()``); ``await handler.close()``
flushes the publisher. Nothing here blocks on Kafka: events are handed to the
publisher, which spools when the broker is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import uuid
from collections.abc import Callable
from typing import Any

from producers.analysis import fetch_analysis
from producers.backoff import Backoff
from producers.breaker import BreakerConfig, CircuitBreaker, CircuitBreakerRegistry
from producers.budget import RetryBudget
from producers.classify import Classification, Classifier
from producers.clock import Clock, SystemClock
from producers.config import SDKConfig
from producers.errors import CircuitOpenError
from producers.gate import TaskGate
from producers.invoke import call_user_function, takes_argument
from producers.logs import sdk_logger
from producers.publisher import KafkaPublisher, Publisher, PublisherConfig
from producers.registry import RunnerRegistry
from producers.reporting import CANCELLED, annotate, error_info, resource_need
from producers.retrying import RetryPolicy, plan_retry
from producers.scope import TaskScope, current_scope
from producers.tracing import current_trace, tracing_available
from schemas import (
    CallCompleted,
    ConfigureBreaker,
    Envelope,
    OperationRecorded,
    Source,
    TaskAttemptFailed,
    TaskFailed,
    TaskStarted,
    TaskSucceeded,
)

__all__ = ["ErrorHandler"]

log = sdk_logger("errorflow.handler")
_MISSING: Any = object()
_CO_COROUTINE = inspect.CO_COROUTINE


class ErrorHandler(RunnerRegistry):
    def __init__(
        self,
        config: SDKConfig | None = None,
        *,
        publisher: Publisher | None = None,
        clock: Clock | None = None,
        classifier: Classifier | None = None,
    ) -> None:
        self.config = config = config or SDKConfig()
        self.clock = clock or SystemClock()
        self.classifier = classifier or Classifier(default_category=config.default_category)
        if config.rules_file is not None and classifier is None:
            self.classifier.load_toml(config.rules_file)
        self.source = Source.here(runner_id=config.runner_id, worker_id=config.worker_id)
        self.publisher: Publisher = publisher or KafkaPublisher(
            PublisherConfig(
                bootstrap_servers=config.kafka_bootstrap_servers,
                spool_dir=config.spool_dir,
                max_buffer=config.max_buffer,
                send_timeout_s=config.send_timeout_s,
            )
        )
        self.circuit_breakers = CircuitBreakerRegistry(clock=self.clock)
        self.circuit_breakers.on_fleet_config = self._publish_breaker_config
        self._breakers = self.circuit_breakers.breakers
        self.backoff = Backoff(config.backoff_base_s, config.backoff_cap_s, config.backoff_enabled)
        self.retry_budget = RetryBudget(
            config.retry_budget_ratio,
            config.retry_budget_min_per_window,
            config.retry_budget_window_s,
            self.clock,
        )
        RunnerRegistry.__init__(self)
        self.in_flight = 0
        self.gate = TaskGate()
        self.healing_hooks: dict[str, Callable[..., Any]] = {}
        self.supervisor_hook: Callable[..., Any] | None = None
        self.commands: Any = None  # the CommandListener, when consuming commands
        #: Failed loads per model since start (heartbeats carry them: model corruption).
        self.model_load_errors: dict[str, int] = {}
        self._supervisor: Any = None
        self.counters = {
            "tasks": 0,
            "succeeded": 0,
            "failed": 0,
            "retries": 0,
            "rejected": 0,
            "fallbacks": 0,
        }
        self._background: list[Any] = []
        # The C function itself when the clock is the system's: one call less per use.
        self._monotonic = (
            time.monotonic if isinstance(self.clock, SystemClock) else self.clock.monotonic
        )
        self._tracing = tracing_available()
        self._publish = self.publisher.publish
        self._wall_offset = time.time() - self._monotonic()
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> ErrorHandler:
        """Start publishing (and, if configured, consuming commands and heartbeats)."""
        if self._started:
            return self
        self._started = True
        await self.publisher.start()
        if self.config.consume_commands:
            from producers.commands import CommandListener

            listener = self.commands = CommandListener(self)
            await listener.start()
            self.on_registered = listener.refresh  # executors registered later join too
            self._background.append(listener)
            if self.config.consume_healing:
                from producers.healing import HealingListener

                healer = HealingListener(self)
                await healer.start()
                self._background.append(healer)
            if self.config.healing_supervisor_cmd or self.supervisor_hook is not None:
                await self._start_supervisor()
        if self.config.heartbeat_interval_s:
            from producers.heartbeat import HeartbeatEmitter

            emitter = HeartbeatEmitter(self, interval_s=self.config.heartbeat_interval_s)
            await emitter.start()
            self._background.append(emitter)
        return self

    async def close(self, timeout_s: float = 10.0) -> None:
        self.on_registered = None
        for component in reversed(self._background):
            await component.stop()
        self._background.clear()
        await self.publisher.close(timeout_s)
        self._started = False

    async def __aenter__(self) -> ErrorHandler:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def register_healing_hook(self, action: str, func: Callable[..., Any]) -> None:
        """What this runner does for ``action`` (``restart_worker``, ``scale_resources``,
        ``reload_model``): called with the action's params."""
        self.healing_hooks[action] = func

    def model_load_failed(self, model: str) -> None:
        """Count a failed load of ``model``: the next heartbeats carry the count, and
        repeated failures within a minute are diagnosed as model corruption (healing's
        ``reload_model``). Call it where the runner loads models."""
        self.model_load_errors[model] = self.model_load_errors.get(model, 0) + 1

    async def register_supervisor_hook(self, func: Callable[..., Any]) -> None:
        """Make this process a supervisor: ``func`` restarts *another* worker that
        stopped heartbeating, called with the action's params (``worker_id``, ``host``,
        ``runner_id``, evidence). Instead of ``healing_supervisor_cmd``."""
        self.supervisor_hook = func
        if self._started and self.config.consume_commands and self._supervisor is None:
            await self._start_supervisor()

    async def _start_supervisor(self) -> None:
        from producers.supervisor import SupervisorListener

        self._supervisor = SupervisorListener(self)
        await self._supervisor.start()
        self._background.append(self._supervisor)

    def _publish_breaker_config(self, service: str, config: BreakerConfig) -> None:
        self.emit(
            ConfigureBreaker,
            service=service,
            failure_threshold=config.failure_threshold,
            recovery_timeout_s=float(config.recovery_timeout),
            success_threshold=config.success_threshold,
            failure_rate_threshold=config.failure_rate_threshold,
            window_s=float(config.window_s),
            minimum_calls=config.minimum_calls,
            half_open_max_calls=config.half_open_max_calls,
        )

    def emit(self, model: type[Envelope], **fields: Any) -> None:
        """Hand a ``model`` event, stamped with this runner's source, the active trace and
        the current time, to the publisher; it is built off the hot path (never blocks)."""
        trace = current_trace() if self._tracing else None
        now = time.time()
        # Re-anchors the wall-clock offset the call success path uses instead of time.time().
        self._wall_offset = now - self._monotonic()
        self._publish((model, now, fields, self.source, trace))

    # -- tasks -------------------------------------------------------------------------

    async def wrap_task_execution(
        self,
        task_id: str,
        template_id: str,
        operation_type: str,
        task_data: dict[str, Any] | None,
        execute_func: Callable[..., Any],
        *,
        attempt: int = 1,
        max_attempts: int | None = None,
        deadline_s: float | None = None,
        service: str | None = None,
    ) -> Any:
        """Run ``execute_func`` as one task: publish every attempt, retry transient
        errors in-process (backoff with full jitter, Retry-After, deadline, retry budget,
        breaker state), and on final failure publish ``task.failed`` and re-raise the
        original exception, annotated with its classification.

        ``execute_func`` receives ``task_data`` when it takes a positional argument,
        nothing otherwise; sync functions run in a worker thread. ``attempt`` is the
        fleet-wide attempt number (a ``recovery.retry`` command carries it); local
        retries continue while it is below ``max_attempts``.
        """
        limit = max_attempts or self.config.max_attempts
        deadline_s = deadline_s if deadline_s is not None else self.config.task_deadline_s
        deadline = self.clock.monotonic() + deadline_s if deadline_s else None
        scope = TaskScope(task_id, template_id, operation_type, attempt)
        gate = self.gate  # throttled or draining (healing actions): wait for a slot
        if gate.free:
            gate.running += 1
        else:
            await gate.enter()
        token = current_scope.set(scope)
        args = (task_data,) if takes_argument(execute_func) else ()
        base = {"task_id": task_id, "template_id": template_id, "operation_type": operation_type}
        self.counters["tasks"] += 1
        self.emit(TaskStarted, **base, attempt=attempt, task_data=task_data)
        task_started = self.clock.monotonic()
        try:
            while True:
                started = self.clock.monotonic()
                self.in_flight += 1
                try:
                    result = await call_user_function(execute_func, *args)
                except Exception as exc:
                    verdict = self.classifier.classify(exc)
                    info = error_info(exc, verdict, service or getattr(exc, "service", None))
                    delay, why = self._retry_plan(exc, verdict, scope.attempt, limit, deadline)
                    if delay is not None:
                        self.counters["retries"] += 1
                        self.emit(
                            TaskAttemptFailed,
                            **base,
                            attempt=scope.attempt,
                            error=info,
                            will_retry=True,
                            retry_delay_s=delay,
                        )
                        await self.clock.sleep(delay)
                        scope.attempt += 1
                        continue
                    self.counters["failed"] += 1
                    resource = resource_need(exc) if verdict.category == "resource" else None
                    self.emit(
                        TaskFailed,
                        **base,
                        attempt=scope.attempt,
                        error=info,
                        attempts=scope.attempt,
                        task_data=task_data,
                        resource=resource,
                    )
                    annotate(
                        exc, info, f"task.failed published after attempt {scope.attempt} ({why})"
                    )
                    raise
                except BaseException as exc:  # cancelled or interrupted: the task still ends
                    self.counters["failed"] += 1
                    self.emit(
                        TaskFailed,
                        **base,
                        attempt=scope.attempt,
                        error=error_info(exc, CANCELLED, service),
                        attempts=scope.attempt,
                        task_data=task_data,
                    )
                    raise
                finally:
                    self.in_flight -= 1
                self.retry_budget.record_success()
                self.counters["succeeded"] += 1
                now = self.clock.monotonic()
                self.emit(
                    TaskSucceeded,
                    **base,
                    attempt=scope.attempt,
                    duration_ms=(now - task_started) * 1000,
                    attempt_duration_ms=(now - started) * 1000,
                )
                return result
        finally:
            current_scope.reset(token)
            gate.leave()

    def _retry_plan(
        self,
        exc: BaseException,
        verdict: Classification,
        attempt: int,
        limit: int,
        deadline: float | None,
    ) -> tuple[float | None, str]:
        return plan_retry(
            RetryPolicy(self.backoff, self.retry_budget, self.circuit_breakers, self.clock),
            exc,
            verdict,
            attempt=attempt,
            limit=limit,
            deadline=deadline,
        )

    def record_operation(self, operation_kind: str, data: dict[str, Any]) -> str:
        """Record a compensable operation of the current task; returns its id."""
        scope = current_scope.get()
        if scope is None:
            raise RuntimeError(
                "record_operation needs a running task (wrap_task_execution "
                "or ErrorHandlingContext)"
            )
        scope.operations += 1
        operation_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope.task_id}/{scope.operations}"))
        self.emit(
            OperationRecorded,
            task_id=scope.task_id,
            template_id=scope.template_id,
            operation_type=scope.operation_type,
            attempt=scope.attempt,
            operation_id=operation_id,
            operation_kind=operation_kind,
            data=data,
        )
        return operation_id

    # -- external calls ----------------------------------------------------------------

    async def protect_external_call(
        self,
        service: str,
        func: Callable[..., Any],
        *args: Any,
        fallback: Any = _MISSING,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call ``func(*args, **kwargs)`` through ``service``'s circuit breaker.

        Publishes one ``call.completed`` per call: success, failure, timeout, rejected
        (short-circuited) or fallback (``fallback_reason`` says why; the error is kept).
        ``fallback`` is a value, or a callable called with no arguments. Without one, a
        rejected call raises :class:`CircuitOpenError`. Only transient and resource
        errors count against the breaker: a 400 says the service is up.
        """
        # The success path is kept flat on purpose: it is what every external call pays
        # (benchmarks/sdk_overhead.py); rejections and failures take the slow paths.
        breaker = self._breakers.get(service) or self.circuit_breakers.get(service)
        monotonic = self._monotonic
        started = monotonic()
        # breaker.allow() and breaker.record_success() are inlined for the closed state.
        if not breaker._fast_closed and not breaker.allow():
            return await self._rejected(service, breaker, fallback, started)
        code = getattr(func, "__code__", None)  # is_coroutine_function, inlined
        try:
            if timeout is None and code is not None and code.co_flags & _CO_COROUTINE:
                result = await func(*args, **kwargs)
            elif timeout is None:
                result = await call_user_function(func, *args, **kwargs)
            else:
                result = await asyncio.wait_for(call_user_function(func, *args, **kwargs), timeout)
        except Exception as exc:
            return await self._call_failed(exc, service, breaker, fallback, started)
        except asyncio.CancelledError:
            breaker.release()  # a cancelled probe must not keep the half-open's slot
            raise
        if breaker._fast_success:
            breaker._consecutive_failures = 0
        else:
            breaker.record_success()
        scope = current_scope.get()
        now = monotonic()
        took = (now - started) * 1000
        self._publish(
            (
                CallCompleted,
                now + self._wall_offset,
                # the order of producers.pending.CALL_FIELDS
                (service, "success", None, None, took)
                if scope is None
                else (service, "success", scope.task_id, scope.attempt, took),
                self.source,
                current_trace() if self._tracing else None,
            )
        )
        return result

    async def _rejected(
        self, service: str, breaker: CircuitBreaker, fallback: Any, started: float
    ) -> Any:
        self.counters["rejected"] += 1
        if fallback is not _MISSING:
            value = await self._fallback(fallback)
            self._call_event(service, "fallback", started, None, "rejected")
            return value
        self._call_event(service, "rejected", started, None, None)
        raise CircuitOpenError(service, breaker.retry_after())

    async def _call_failed(
        self, exc: Exception, service: str, breaker: CircuitBreaker, fallback: Any, started: float
    ) -> Any:
        verdict = self.classifier.classify(exc)
        if verdict.category in ("transient", "resource"):
            breaker.record_failure()
        else:
            breaker.release()
        info = error_info(exc, verdict, service)
        outcome = "timeout" if isinstance(exc, TimeoutError) else "failure"
        if fallback is not _MISSING:
            value = await self._fallback(fallback)
            self._call_event(service, "fallback", started, info, outcome)
            return value
        self._call_event(service, outcome, started, info, None)
        with contextlib.suppress(AttributeError, TypeError):
            exc.service = service  # type: ignore[attr-defined]
        raise exc

    async def _fallback(self, fallback: Any) -> Any:
        self.counters["fallbacks"] += 1
        if callable(fallback):
            return await call_user_function(fallback)
        return fallback

    def _call_event(
        self,
        service: str,
        outcome: str,
        started: float,
        error: Any,
        fallback_reason: str | None,
    ) -> None:
        scope = current_scope.get()
        task_id, attempt = (scope.task_id, scope.attempt) if scope else (None, None)
        extra = {"fallback_reason": fallback_reason} if fallback_reason else {}
        self.emit(
            CallCompleted,
            service=service,
            outcome=outcome,
            task_id=task_id,
            attempt=attempt,
            error=error,
            duration_ms=max(0.0, (self.clock.monotonic() - started) * 1000),
            **extra,
        )

    # -- analysis ----------------------------------------------------------------------

    async def get_error_analysis(self, window_minutes: int = 5) -> dict[str, Any]:
        """The seed's analysis, answered by the pipeline (API or ClickHouse)."""
        analysis = await fetch_analysis(self.config, window_minutes)
        analysis["sdk"] = {
            "runner_id": self.config.runner_id,
            "counters": dict(self.counters),
            "publisher": self.publisher.stats(),
            "local_circuit_breakers": self.circuit_breakers.status(),
        }
        return analysis
