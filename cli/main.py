"""Entry point of the ``errorflow`` console script."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cli import demo, dlq, infra, pipeline, supervise, worker
from deploy.settings import DeploySettings

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="errorflow",
        description="Error handling and recovery for job-runner fleets, on Kafka.",
    )
    sub = parser.add_subparsers(title="subcommands", metavar="<command>", required=True)
    infra.register(sub)
    pipeline.register(sub)
    worker.register(sub)
    supervise.register(sub)
    dlq.register(sub)
    demo.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = DeploySettings()
    return int(args.run(args, settings))
