"""``errorflow kafka`` and ``errorflow topics``: the broker and the registry's topics."""

from __future__ import annotations

import argparse
import asyncio
import sys

from deploy.broker import BrokerError, LocalBroker
from deploy.settings import DeploySettings
from deploy.topics import create_topics, describe_topics

__all__ = ["register"]


def _broker(args: argparse.Namespace, settings: DeploySettings) -> LocalBroker:
    return LocalBroker(port=args.port, data_dir=settings.data_dir)


def _kafka(args: argparse.Namespace, settings: DeploySettings) -> int:
    broker = _broker(args, settings)
    try:
        if args.action == "fetch":
            print(f"kafka jars in {broker.fetch()}")
        elif args.action == "start":
            print(broker.start().describe())
        elif args.action == "stop":
            print("kafka stopped" if broker.stop() else "kafka was not running")
        else:
            status = broker.status()
            print(status.describe())
            return 0 if status.running else 3
    except BrokerError as exc:
        print(f"errorflow kafka {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def _topics(args: argparse.Namespace, settings: DeploySettings) -> int:
    bootstrap = settings.bootstrap_servers
    try:
        if args.action == "create":
            created = asyncio.run(create_topics(bootstrap, partitions=args.partitions))
            print(
                f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else "")
            )
        states = asyncio.run(describe_topics(bootstrap))
    except Exception as exc:  # noqa: BLE001 - any client failure is reported, not traced
        print(
            f"errorflow topics {args.action}: cannot reach Kafka at {bootstrap}: {exc!r}",
            file=sys.stderr,
        )
        return 1
    print(f"{'topic':<36} {'partitions':>10}  {'cleanup.policy':<14} retention.ms")
    for state in states:
        policy, retention = state.cleanup_policy, state.retention_ms
        print(f"{state.name:<36} {state.partitions:>10}  {policy:<14} {retention}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kafka = sub.add_parser("kafka", help="run a local Apache Kafka broker (KRaft, no Docker)")
    kafka.add_argument("action", choices=["start", "stop", "status", "fetch"])
    kafka.add_argument("--port", type=int, default=9092, help="client port (controller: port+1)")
    kafka.set_defaults(run=_kafka)

    topics = sub.add_parser("topics", help="create or list the errorflow.* topics")
    topics.add_argument("action", choices=["create", "list"])
    topics.add_argument(
        "--partitions",
        type=int,
        default=None,
        help="partitions for non-compacted topics (default: per registry)",
    )
    topics.set_defaults(run=_topics)
