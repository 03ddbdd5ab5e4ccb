"""``errorflow worker``: the stream analytics worker."""

from __future__ import annotations

import argparse
import asyncio
import signal

from deploy.settings import DeploySettings

__all__ = ["register"]


async def _run() -> None:
    import logging
    import os

    from streams.app import create_app

    logging.basicConfig(
        level=os.environ.get("ERRORFLOW_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )

    app = create_app()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)  # `kill -USR1 <pid>`: where is it?
    print(
        f"errorflow worker {app.settings.name}: analytics from "
        f"{app.settings.kafka_bootstrap_servers}",
        flush=True,
    )
    await app.run(stop)


def _dump_tasks() -> None:
    import io
    import sys

    out = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(file=out)
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()


def _worker(args: argparse.Namespace, settings: DeploySettings) -> int:
    asyncio.run(_run())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser("worker", help="windowed error rates, anomalies and alerts")
    worker.set_defaults(run=_worker)
