"""Integration fixtures: a private broker a test may stop and restart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.broker import BrokerError, LocalBroker
from deploy.topics import create_topics
from tests.conftest import unavailable


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker of this module's own (port 39192), for tests that take Kafka away."""
    broker = LocalBroker(port=39192, data_dir=Path(tmp_path_factory.mktemp("private-kafka")))
    try:
        broker.start()
        asyncio.run(create_topics(broker.bootstrap))
    except (BrokerError, OSError) as exc:
        unavailable(f"cannot start a private Kafka broker: {exc}")
    yield broker
    broker.stop()
