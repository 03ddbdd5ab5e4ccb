"""The topic registry: the only place topic names are written (DESIGN.md, "Topics")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from schemas.envelope import Envelope
from schemas.errors import SchemaError

__all__ = [
    "ALERTS",
    "ANOMALIES",
    "BREAKER_STATE",
    "CALL_EVENTS",
    "COMPENSATION_COMMANDS",
    "CONTROL",
    "DEAD_LETTER",
    "HEALING_COMMANDS",
    "HEARTBEATS",
    "POISON",
    "RECOVERY_COMMANDS",
    "TASK_EVENTS",
    "TOPICS",
    "TopicSpec",
    "key_of",
    "topic_by_name",
    "topic_of",
]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic of the contract. ``key_field`` names what the Kafka key is made of."""

    name: str
    key_field: str
    types: tuple[str, ...]
    cleanup_policy: Literal["delete", "compact"]
    partitions: int

    @property
    def compacted(self) -> bool:
        return self.cleanup_policy == "compact"


TASK_EVENTS = TopicSpec(
    "errorflow.task-events",
    "task_id",
    (
        "task.started",
        "operation.recorded",
        "task.attempt_failed",
        "task.succeeded",
        "task.failed",
        "compensation.completed",
        "compensation.failed",
    ),
    "delete",
    6,
)
CALL_EVENTS = TopicSpec("errorflow.call-events", "service", ("call.completed",), "delete", 6)
HEARTBEATS = TopicSpec(
    "errorflow.heartbeats",
    "worker_id",
    ("worker.heartbeat", "resource.available", "healing.result"),
    "delete",
    3,
)
RECOVERY_COMMANDS = TopicSpec(
    "errorflow.recovery-commands",
    "task_id",
    ("recovery.retry", "recovery.queued", "recovery.dead_lettered", "recovery.fail_fast"),
    "delete",
    6,
)
COMPENSATION_COMMANDS = TopicSpec(
    "errorflow.compensation-commands", "task_id", ("compensation.requested",), "delete", 3
)
HEALING_COMMANDS = TopicSpec(
    "errorflow.healing-commands", "worker_id", ("healing.action",), "delete", 3
)
BREAKER_STATE = TopicSpec("errorflow.breaker-state", "service", ("breaker.state",), "compact", 1)
CONTROL = TopicSpec(
    "errorflow.control",
    "name",
    ("breaker.reset", "breaker.config", "alerts.thresholds"),
    "compact",
    1,
)
ANOMALIES = TopicSpec("errorflow.anomalies", "anomaly key", ("anomaly.detected",), "delete", 3)
ALERTS = TopicSpec(
    "errorflow.alerts", "alert fingerprint", ("alert.firing", "alert.resolved"), "delete", 3
)
DEAD_LETTER = TopicSpec("errorflow.dead-letter", "task_id", ("task.dead_lettered",), "delete", 3)
POISON = TopicSpec("errorflow.poison", "source topic", ("poison.record",), "delete", 1)

TOPICS: tuple[TopicSpec, ...] = (
    TASK_EVENTS,
    CALL_EVENTS,
    HEARTBEATS,
    RECOVERY_COMMANDS,
    COMPENSATION_COMMANDS,
    HEALING_COMMANDS,
    BREAKER_STATE,
    CONTROL,
    ANOMALIES,
    ALERTS,
    DEAD_LETTER,
    POISON,
)

_BY_TYPE = {type_: spec for spec in TOPICS for type_ in spec.types}
_BY_NAME = {spec.name: spec for spec in TOPICS}


def topic_of(event: Envelope | str) -> TopicSpec:
    """The topic a record (or a type name) belongs on."""
    type_ = event if isinstance(event, str) else event.type
    try:
        return _BY_TYPE[type_]
    except KeyError:
        raise SchemaError(f"no topic carries type {type_!r}") from None


def topic_by_name(name: str) -> TopicSpec:
    """The registry entry for a topic name."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise SchemaError(f"unknown topic {name!r}") from None


def _anomaly_key(event: Envelope) -> str:
    key: dict[str, str] = getattr(event, "key", {})
    parts = ",".join(f"{k}={v}" for k, v in sorted(key.items()))
    return f"{getattr(event, 'kind', '')}:{parts}"


# Keys that are not a plain field of the record. Control keys name the setting, so
# compaction keeps exactly the latest value of each setting.
_SPECIAL_KEYS: dict[str, Callable[[Envelope], str]] = {
    "breaker.reset": lambda e: f"breaker.reset:{getattr(e, 'service', '')}",
    "breaker.config": lambda e: f"breaker.config:{getattr(e, 'service', '')}",
    "alerts.thresholds": lambda e: "alerts.thresholds",
    "anomaly.detected": _anomaly_key,
    "alert.firing": lambda e: str(getattr(e, "alert_id", "")),
    "alert.resolved": lambda e: str(getattr(e, "alert_id", "")),
    "poison.record": lambda e: str(getattr(e, "source_topic", "")),
}


def key_of(event: Envelope) -> str:
    """The Kafka key of ``event`` as the contract defines it."""
    special = _SPECIAL_KEYS.get(event.type)
    if special is not None:
        return special(event)
    return str(getattr(event, topic_of(event).key_field))
