"""Connection settings shared by every errorflow process, read once at process entry."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_BOOTSTRAP", "KafkaSettings"]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


class KafkaSettings(BaseSettings):
    """Where Kafka is: ``KAFKA_BOOTSTRAP_SERVERS`` (default ``127.0.0.1:9092``)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    kafka_bootstrap_servers: str = DEFAULT_BOOTSTRAP

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers
