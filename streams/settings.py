"""Worker settings (``ERRORFLOW_WORKER_*``), read once at process entry."""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.settings import DEFAULT_BOOTSTRAP
from streams.analytics.detector import AnalyticsConfig
from streams.analytics.windows import WindowSpec
from streams.breakers.board import BoardConfig
from streams.breakers.budget import BudgetConfig
from streams.breakers.fleet_breaker import FleetBreakerConfig
from streams.engine import EngineSettings
from streams.recovery.manager import RecoveryConfig
from streams.recovery.strategies import DEFAULT_TABLE, StrategyTable, load_strategies

__all__ = ["WorkerSettings"]


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", env_prefix="ERRORFLOW_WORKER_", populate_by_name=True
    )

    kafka_bootstrap_servers: str = Field(
        DEFAULT_BOOTSTRAP, validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    app_id: str = "errorflow-analytics"
    # Stable per worker process: a restarted worker with the same name aborts the
    # transactions its killed predecessor left open instead of waiting for a timeout.
    name: str = Field(default_factory=socket.gethostname)
    internal_partitions: int = Field(6, ge=1)
    tumbling_s: float = Field(60, gt=0)
    hopping_s: float = Field(300, gt=0)
    hop_s: float = Field(60, gt=0)
    grace_s: float = Field(10, ge=0)
    baseline_windows: int = Field(30, ge=2)
    min_history: int = Field(10, ge=2)
    spike_score: float = Field(3.5, gt=0)
    robust: bool = True
    min_spike_errors: int = Field(5, ge=1)
    min_rate_attempts: int = Field(20, ge=1)
    hold_down_s: float = Field(120, ge=0)
    tick_s: float = Field(0.5, gt=0)
    # With no input for this long, the clock closes windows (event time does otherwise).
    idle_close_s: float = Field(30, gt=0)
    batch_records: int = Field(5000, ge=1)
    # Where a brand-new deployment starts reading task and call events: "latest" watches
    # from now on (history is in ClickHouse); "earliest" replays the topics' retention.
    # Afterwards the committed offsets rule, so restarts lose nothing.
    start_from: Literal["latest", "earliest"] = "latest"
    # Self-healing (streams/healing/): cooldown per worker and action, the fleet budget
    # (more than this share of workers needing one action at once: none acts, one
    # alert), dry-run, how long an action stays valid, when it is verified, and how
    # long a throttle lasts.
    healing_enabled: bool = True
    healing_cooldown_s: float = Field(600, ge=0)
    healing_fleet_fraction: float = Field(0.5, gt=0, le=1)
    healing_dry_run: bool = False
    healing_ttl_s: float = Field(300, gt=0)
    healing_verify_s: float = Field(120, gt=0)
    healing_throttle_s: float = Field(300, gt=0)
    # A worker silent this long is forgotten (a restarted runner has a new worker id).
    healing_forget_s: float = Field(3600, gt=0)
    # Prometheus /metrics and live /state (streams/observe.py); port 0 turns it off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9464, ge=0, le=65535)
    # How soon a killed worker's partitions move to the others (Kafka group session).
    session_timeout_ms: int = Field(6000, ge=1000)

    # Fleet breakers: defaults for services without a breaker.config (the seed's
    # add_breaker values), the retry budget, and how often a non-closed state is said
    # again (SDKs ignore fleet states older than their cluster_state_max_age_s).
    breaker_failure_threshold: int = Field(5, ge=1)
    breaker_recovery_timeout_s: float = Field(60, gt=0)
    breaker_success_threshold: int = Field(3, ge=1)
    breaker_half_open_max_calls: int = Field(1, ge=1)
    breaker_quorum_workers: int = Field(1, ge=1)
    breaker_failure_rate_threshold: float | None = Field(None, gt=0, le=1)
    breaker_window_s: float = Field(60, gt=0)
    breaker_minimum_calls: int = Field(10, ge=1)
    breaker_republish_s: float = Field(60, gt=0)
    retry_budget_ratio: float = Field(0.1, ge=0)
    retry_budget_min_retries: int = Field(10, ge=0)
    retry_budget_window_s: float = Field(60, gt=0)

    # Recovery: the strategy table (category → retry/queue/fail_fast/dead_letter, JSON in
    # the environment), attempts, the durable retry backoff, how long a task may wait
    # for capacity, compensation retries, and operation types never compensated.
    recovery_strategies: dict[str, Literal["retry", "queue", "fail_fast", "dead_letter"]] = Field(
        default_factory=lambda: dict(DEFAULT_TABLE)
    )
    recovery_max_attempts: int = Field(3, ge=1)
    recovery_retry_base_s: float = Field(1, ge=0)
    recovery_retry_cap_s: float = Field(60, ge=0)
    recovery_max_park_s: float = Field(3600, gt=0)
    recovery_task_ttl_s: float = Field(86400, gt=0)
    command_max_wait_s: float = Field(
        600,
        gt=0,
        validation_alias=AliasChoices(
            "ERRORFLOW_WORKER_COMMAND_MAX_WAIT_S", "ERRORFLOW_COMMAND_MAX_WAIT_S"
        ),
    )
    saga_max_tries: int = Field(3, ge=1)
    saga_backoff_s: float = Field(2, ge=0)
    no_compensation: list[str] = Field(default_factory=list)
    # On start, capacity news this old still counts (heartbeats are periodic anyway).
    resource_lookback_s: float = Field(60, ge=0)

    @property
    def step_ms(self) -> int:
        """The bucket partial aggregates use: divides every window step."""
        from math import gcd

        return gcd(int(self.tumbling_s * 1000), int(self.hop_s * 1000))

    def analytics(self) -> AnalyticsConfig:
        grace = int(self.grace_s * 1000)
        return AnalyticsConfig(
            tumbling=WindowSpec.tumbling(int(self.tumbling_s * 1000), grace),
            hopping=WindowSpec(int(self.hopping_s * 1000), int(self.hop_s * 1000), grace),
            baseline_windows=self.baseline_windows,
            min_history=self.min_history,
            spike_score=self.spike_score,
            robust=self.robust,
            min_spike_errors=self.min_spike_errors,
            min_rate_attempts=self.min_rate_attempts,
            hold_down_ms=int(self.hold_down_s * 1000),
        )

    def board(self) -> BoardConfig:
        defaults = FleetBreakerConfig(
            failure_threshold=self.breaker_failure_threshold,
            recovery_timeout_s=self.breaker_recovery_timeout_s,
            success_threshold=self.breaker_success_threshold,
            failure_rate_threshold=self.breaker_failure_rate_threshold,
            window_s=self.breaker_window_s,
            minimum_calls=self.breaker_minimum_calls,
            quorum_workers=self.breaker_quorum_workers,
            half_open_max_calls=self.breaker_half_open_max_calls,
        )
        return BoardConfig(defaults, self.budget(), int(self.breaker_republish_s * 1000))

    def budget(self) -> BudgetConfig:
        return BudgetConfig(
            self.retry_budget_ratio, self.retry_budget_min_retries, self.retry_budget_window_s
        )

    def recovery(self) -> RecoveryConfig:
        table = StrategyTable(
            {**DEFAULT_TABLE, **self.recovery_strategies},
            self.recovery_max_attempts,
            load_strategies(),
        )
        return RecoveryConfig(
            table,
            retry_base_ms=int(self.recovery_retry_base_s * 1000),
            retry_cap_ms=int(self.recovery_retry_cap_s * 1000),
            max_park_ms=int(self.recovery_max_park_s * 1000),
            budget=self.budget(),
            saga_max_tries=self.saga_max_tries,
            saga_backoff_ms=int(self.saga_backoff_s * 1000),
            no_compensation=frozenset(self.no_compensation),
            task_ttl_ms=int(self.recovery_task_ttl_s * 1000),
            command_max_wait_ms=int(self.command_max_wait_s * 1000),
        )

    def engine(self) -> EngineSettings:
        return EngineSettings(
            bootstrap=self.kafka_bootstrap_servers,
            app_id=self.app_id,
            name=self.name,
            session_timeout_ms=self.session_timeout_ms,
            tick_s=self.tick_s,
            internal_partitions=self.internal_partitions,
            max_records=self.batch_records,
        )

    def topic(self, suffix: str) -> str:
        """The worker's internal topics (its own changelog, not part of the contract)."""
        return f"{self.app_id}-{suffix}"
