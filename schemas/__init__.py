"""errorflow's wire contract: event and command models, the codec and the topic registry.

Every record is one UTF-8 JSON object with the envelope of :class:`Envelope`.
:func:`encode` and :func:`decode` are the one codec; :class:`DecodeError` is the one
exception a bad record raises.
"""

from schemas.analytics import (
    AlertFiring,
    AlertResolved,
    AnomalyDetected,
    PoisonRecorded,
    TaskDeadLettered,
)
from schemas.codec import MODELS, decode, encode
from schemas.commands import (
    SUPERVISOR,
    Command,
    CompensateOperation,
    DeadLetterTask,
    FailTaskFast,
    QueueTask,
    RetryTask,
    RunHealingAction,
    command_id,
)
from schemas.control import BreakerStateChanged, ConfigureBreaker, ResetBreaker, SetAlertThresholds
from schemas.envelope import Envelope, Source, Trace, new_id
from schemas.errors import DecodeError, SchemaError
from schemas.events import (
    CallCompleted,
    CompensationCompleted,
    CompensationFailed,
    GpuStatus,
    HealingResult,
    ModelStatus,
    OperationRecorded,
    ResourceAvailable,
    ResourceNeed,
    TaskAttemptFailed,
    TaskEvent,
    TaskFailed,
    TaskStarted,
    TaskSucceeded,
    WorkerHeartbeat,
)
from schemas.failure import Category, ErrorInfo, Severity
from schemas.settings import KafkaSettings
from schemas.timestamps import format_utc, utc_now
from schemas.topics import TOPICS, TopicSpec, key_of, topic_by_name, topic_of

__all__ = [
    "MODELS",
    "TOPICS",
    "AlertFiring",
    "AlertResolved",
    "AnomalyDetected",
    "BreakerStateChanged",
    "CallCompleted",
    "Category",
    "Command",
    "CompensateOperation",
    "CompensationCompleted",
    "CompensationFailed",
    "ConfigureBreaker",
    "DeadLetterTask",
    "DecodeError",
    "Envelope",
    "ErrorInfo",
    "FailTaskFast",
    "GpuStatus",
    "HealingResult",
    "KafkaSettings",
    "ModelStatus",
    "OperationRecorded",
    "PoisonRecorded",
    "QueueTask",
    "ResetBreaker",
    "ResourceAvailable",
    "ResourceNeed",
    "RetryTask",
    "RunHealingAction",
    "SUPERVISOR",
    "SchemaError",
    "SetAlertThresholds",
    "Severity",
    "Source",
    "TaskAttemptFailed",
    "TaskDeadLettered",
    "TaskEvent",
    "TaskFailed",
    "TaskStarted",
    "TaskSucceeded",
    "TopicSpec",
    "Trace",
    "WorkerHeartbeat",
    "command_id",
    "decode",
    "encode",
    "format_utc",
    "key_of",
    "new_id",
    "topic_by_name",
    "topic_of",
    "utc_now",
]
