"""The errorflow runner SDK: classify, retry, protect, record and publish.

    from producers import get_error_handler, with_error_handling, ErrorHandlingContext

Importing this package never imports Faust, numpy, scipy or ClickHouse drivers.
"""

from producers.analysis import AnalysisUnavailable
from producers.backoff import Backoff
from producers.breaker import BreakerConfig, CircuitBreaker, CircuitBreakerRegistry
from producers.budget import RetryBudget
from producers.classify import Classification, Classifier, ClassifierConfigError, Rule
from producers.clock import Clock, ManualClock, SystemClock
from producers.config import SDKConfig
from producers.context import ErrorHandlingContext
from producers.decorators import with_error_handling
from producers.dependencies import get_error_handler, reset_error_handler
from producers.errors import (
    CategorizedError,
    CircuitOpenError,
    ErrorflowError,
    PermanentError,
    ResourceError,
    TransientError,
    ValidationError,
)
from producers.fingerprint import fingerprint, normalize_message
from producers.handler import ErrorHandler
from producers.publisher import KafkaPublisher, Publisher, PublisherConfig

ErrorHandlingIntegration = ErrorHandler  # the class name of the original design

__all__ = [
    "AnalysisUnavailable",
    "Backoff",
    "BreakerConfig",
    "CategorizedError",
    "CircuitBreaker",
    "CircuitBreakerRegistry",
    "CircuitOpenError",
    "Classification",
    "Classifier",
    "ClassifierConfigError",
    "Clock",
    "ErrorHandler",
    "ErrorHandlingContext",
    "ErrorHandlingIntegration",
    "ErrorflowError",
    "KafkaPublisher",
    "ManualClock",
    "PermanentError",
    "Publisher",
    "PublisherConfig",
    "ResourceError",
    "RetryBudget",
    "Rule",
    "SDKConfig",
    "SystemClock",
    "TransientError",
    "ValidationError",
    "fingerprint",
    "get_error_handler",
    "normalize_message",
    "reset_error_handler",
    "with_error_handling",
]
