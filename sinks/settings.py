"""Where ClickHouse is, read once at process entry."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ClickHouseSettings"]


class ClickHouseSettings(BaseSettings):
    """``CLICKHOUSE_URL`` names a server (e.g. ``http://user:pw@host:8123/errorflow``);
    without it errorflow runs chDB in-process under ``ERRORFLOW_DATA_DIR/chdb``."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    clickhouse_url: SecretStr | None = None
    errorflow_data_dir: Path = Path(".errorflow")
    # An identifier, checked here, because DDL cannot bind a database name as a parameter.
    clickhouse_database: str = Field("errorflow", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    # Retention per table in days, e.g. ERRORFLOW_RETENTION_DAYS='{"events": 30}'; tables
    # not named keep their defaults (events 90 days, see sinks/tables.py).
    errorflow_retention_days: dict[str, int] = Field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return self.clickhouse_url is None

    @property
    def chdb_path(self) -> Path:
        return (self.errorflow_data_dir / "chdb").resolve()
