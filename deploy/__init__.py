"""Running errorflow's infrastructure without Docker: the local Kafka broker and topics."""

from deploy.broker import BrokerError, LocalBroker
from deploy.topics import create_topics, describe_topics

__all__ = ["BrokerError", "LocalBroker", "create_topics", "describe_topics"]
