"""SDK configuration: from the environment (``ERRORFLOW_*``) or explicit, frozen after."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.vocabulary import Category

__all__ = ["SDKConfig"]


class SDKConfig(BaseSettings):
    """Everything the runner SDK reads. Environment names in parentheses.

    ``runner_id`` (``ERRORFLOW_RUNNER_ID``) names the runner fleet member; the spool and
    the command ledger live under ``data_dir`` (``ERRORFLOW_DATA_DIR``) per runner.
    """

    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", env_prefix="ERRORFLOW_", populate_by_name=True
    )

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    runner_id: str = "runner"
    worker_id: str | None = None
    data_dir: Path = Path(".errorflow")

    max_attempts: int = Field(3, ge=1)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_cap_s: float = Field(30.0, ge=0)
    backoff_enabled: bool = True
    task_deadline_s: float | None = Field(None, gt=0)
    default_category: Category = "transient"
    rules_file: Path | None = None

    # Local retry budget: retries may not exceed this share of recent successes plus a
    # small floor per window, so a failing fleet cannot turn into a retry storm.
    retry_budget_ratio: float = Field(0.2, ge=0)
    retry_budget_min_per_window: int = Field(10, ge=0)
    retry_budget_window_s: float = Field(60.0, gt=0)

    max_buffer: int = Field(10_000, ge=1)
    send_timeout_s: float = Field(5.0, gt=0)

    consume_commands: bool = True
    # A fleet breaker state older than this is ignored: the compacted topic keeps the
    # last state of every service forever, and a stale OPEN must not stop a fleet.
    cluster_state_max_age_s: float = Field(600.0, gt=0)
    command_group: str = "errorflow-runners"
    heartbeat_interval_s: float | None = Field(None, gt=0)

    # Healing actions this runner executes (healing.action → healing.result): only inside
    # these directories; restart_worker exits with this code for the supervisor unless a
    # hook is registered (handler.register_healing_hook).
    consume_healing: bool = True
    healing_cache_dirs: list[Path] = Field(default_factory=list)
    healing_archive_dirs: list[Path] = Field(default_factory=list)
    healing_archive_to: Path | None = None
    healing_restart_exit_code: int = Field(75, ge=1, le=255)  # EX_TEMPFAIL: "restart me"
    healing_drain_s: float = Field(300.0, gt=0)
    # The supervisor: restarts a worker that stopped heartbeating (it cannot restart
    # itself). A command run without a shell, ``{worker_id}``, ``{host}`` and
    # ``{runner_id}`` replaced in its arguments (e.g. ``systemctl restart
    # runner@{worker_id}``), or a callable (handler.register_supervisor_hook). Every
    # process with one joins one consumer group, so each restart runs once.
    healing_supervisor_cmd: str | None = None
    healing_supervisor_timeout_s: float = Field(120.0, gt=0)

    api_url: str | None = None
    # The documented name (README, the sinks), not ERRORFLOW_CLICKHOUSE_URL.
    clickhouse_url: str | None = Field(None, validation_alias="CLICKHOUSE_URL")

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool" / self.runner_id

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger" / f"{self.runner_id}.jsonl"
