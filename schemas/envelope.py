"""The envelope every record on every errorflow topic carries (DESIGN.md, "Wire contract")."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.timestamps import UtcDateTime, utc_now

__all__ = ["ENVELOPE_FIELDS", "Envelope", "Source", "Trace", "WireModel", "new_id"]

SDK_VERSION = "0.1.0"

# Fields a record must carry on the wire even though Python callers may omit them
# (they get fresh defaults when an event is built in process, never when one is decoded).
ENVELOPE_FIELDS = ("event_id", "type", "schema_version", "occurred_at", "source")


def new_id() -> str:
    """A fresh random UUID string."""
    return str(uuid.uuid4())


class WireModel(BaseModel):
    """Base of every model on the wire: unknown fields are kept, not rejected."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Source(WireModel):
    """Who emitted a record: a runner process, or (for commands) the emitting component."""

    runner_id: str
    worker_id: str
    host: str
    pid: int
    sdk_version: str

    @classmethod
    def here(cls, *, runner_id: str, worker_id: str | None = None) -> Source:
        """The source describing this process."""
        host = socket.gethostname()
        return cls(
            runner_id=runner_id,
            worker_id=worker_id or f"{host}:{os.getpid()}",
            host=host,
            pid=os.getpid(),
            sdk_version=SDK_VERSION,
        )


class Trace(WireModel):
    """W3C trace context ids."""

    trace_id: str
    span_id: str


def _default_source() -> Source:
    return Source.here(runner_id="unknown")


class Envelope(WireModel):
    """Fields shared by every event and command.

    ``TYPE`` and ``SCHEMA_VERSION`` are the class's identity in the codec; the instance
    fields carry them on the wire.
    """

    TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: str = Field(default_factory=new_id)
    type: str
    schema_version: int = Field(default=1, ge=1)
    occurred_at: UtcDateTime = Field(default_factory=utc_now)
    source: Source = Field(default_factory=_default_source)
    trace: Trace | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_wire_envelope(cls, data: Any, info: Any) -> Any:
        if not isinstance(data, dict):
            return data
        context = info.context or {}
        if context.get("wire"):
            missing = [name for name in ENVELOPE_FIELDS if name not in data]
            if missing:
                raise ValueError(f"envelope field(s) missing: {', '.join(missing)}")
        return data
