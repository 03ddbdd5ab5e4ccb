"""Process-level settings for the errorflow command, read once at entry."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.settings import DEFAULT_BOOTSTRAP

__all__ = ["DeploySettings"]


class DeploySettings(BaseSettings):
    """``ERRORFLOW_DATA_DIR`` (default ``.errorflow``) and ``KAFKA_BOOTSTRAP_SERVERS``."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    errorflow_data_dir: Path = Path(".errorflow")
    kafka_bootstrap_servers: str = DEFAULT_BOOTSTRAP

    @property
    def data_dir(self) -> Path:
        return self.errorflow_data_dir.resolve()

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers
