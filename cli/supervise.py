"""``errorflow supervise``: restart workers that stopped heartbeating.

A worker that stopped heartbeating cannot restart itself; self-healing sends its
restart to the supervisor (see :mod:`producers.supervisor`). This runs one next to the
process manager: ``errorflow supervise --cmd "systemctl restart runner@{worker_id}"``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from deploy.settings import DeploySettings

__all__ = ["register"]


async def _run(cmd: str) -> None:
    from producers import SDKConfig
    from producers.handler import ErrorHandler

    config = SDKConfig(
        healing_supervisor_cmd=cmd,
        consume_commands=True,
        consume_healing=False,  # it runs no tasks: only the supervisor's group
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with ErrorHandler(config):
        print(
            f"errorflow supervise: restarts from {config.kafka_bootstrap_servers} run {cmd!r}",
            flush=True,
        )
        await stop.wait()


def _supervise(args: argparse.Namespace, settings: DeploySettings) -> int:
    from producers.supervisor import supervisor_argv

    try:
        supervisor_argv(args.cmd, {"worker_id": "w", "host": "h", "runner_id": "r"})
    except ValueError as exc:
        raise SystemExit(f"errorflow supervise: --cmd: {exc}") from None
    asyncio.run(_run(args.cmd))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    supervise = sub.add_parser(
        "supervise", help="restart workers that stopped heartbeating (self-healing)"
    )
    supervise.add_argument(
        "--cmd",
        required=True,
        help="run for each restart, no shell; {worker_id}, {host}, {runner_id} replaced",
    )
    supervise.set_defaults(run=_supervise)
