"""Suite-wide fixtures: the real Kafka broker, shared by every integration test.

The broker comes from ``KAFKA_BOOTSTRAP_SERVERS`` when set, else a testcontainers Kafka
when a Docker engine answers, else the project's own local broker (``errorflow kafka``)
on a test port. Under ``CI=true`` a broker that cannot be had fails the run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.broker import BrokerError, LocalBroker
from deploy.topics import create_topics

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Fail under CI, skip elsewhere: a missing service is never a silent pass in CI."""
    if IN_CI:
        pytest.fail(f"required service unavailable under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=10)
    return probe.returncode == 0


def _testcontainers_kafka() -> Iterator[str] | None:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        try:
            from testcontainers.kafka import KafkaContainer
        except ImportError:
            return None

    def run() -> Iterator[str]:
        with KafkaContainer("apache/kafka:3.9.1").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()

    return run()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real broker with every registry topic created."""
    broker: LocalBroker | None = None
    container: Iterator[str] | None = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap and _docker_answers():
        container = _testcontainers_kafka()
        bootstrap = next(container) if container else None
    if not bootstrap:
        port = int(os.environ.get("ERRORFLOW_TEST_KAFKA_PORT", "39092"))
        data_dir = Path(tmp_path_factory.mktemp("kafka"))
        broker = LocalBroker(port=port, data_dir=data_dir)
        try:
            bootstrap = broker.start().bootstrap
        except BrokerError as exc:
            unavailable(f"cannot start the local Kafka broker: {exc}")
    try:
        asyncio.run(asyncio.wait_for(create_topics(bootstrap), 60))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the broker is reported
        unavailable(f"Kafka at {bootstrap} does not answer: {exc!r}")
    yield bootstrap
    if broker is not None:
        broker.stop()
    if container is not None:
        next(container, None)
