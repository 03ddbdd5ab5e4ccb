"""``errorflow worker``: the stream analytics worker."""

from __future__ import annotations

import argparse
import asyncio
import signal

from deploy.settings import DeploySettings

__all__ = ["register"]

_STOP_TIMEOUT_S = 15.0


async def _run() -> None:
    import logging
    import os
    import sys

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
    running = asyncio.create_task(app.run(stop))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    # A last checkpoint gets its time. With the broker away it (and closing the
    # clients: aiokafka's shielded stops wait on Kafka's timeouts, and a stage can end
    # cancelled) would hold the process, so it leaves: what it held was not committed
    # and the next worker processes it again (nothing lost).
    done, _ = await asyncio.wait({running}, timeout=_STOP_TIMEOUT_S)
    if done and not running.cancelled() and running.exception() is None:
        return  # stopped cleanly
    if not done:
        print(
            f"errorflow worker: stopped after {_STOP_TIMEOUT_S:.0f}s without its last "
            "checkpoint (Kafka unreachable?); the next worker redoes it",
            flush=True,
        )
    elif running.cancelled():
        print("errorflow worker: stopped; its stages ended cancelled (Kafka away?)", flush=True)
    else:
        import traceback

        traceback.print_exception(running.exception())
        sys.stderr.flush()
    os._exit(0 if stop.is_set() else 1)  # a crash exits non-zero, for the supervisor


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


def _inspect(args: argparse.Namespace, settings: DeploySettings) -> int:
    import json
    import urllib.error
    import urllib.request

    url = f"{args.url.rstrip('/')}/{'metrics' if args.metrics else 'state'}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - operator's URL
            body = response.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(
            f"errorflow inspect: no worker answers at {url} ({exc}); is `errorflow worker` "
            "running with ERRORFLOW_WORKER_METRICS_PORT?"
        ) from None
    print(body if args.metrics else json.dumps(json.loads(body), indent=2))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser("worker", help="windowed error rates, anomalies and alerts")
    worker.set_defaults(run=_worker)
    inspect = sub.add_parser(
        "inspect", help="a running worker's live state: breakers, waiting tasks, open windows"
    )
    inspect.add_argument("--url", default="http://127.0.0.1:9464")
    inspect.add_argument("--metrics", action="store_true", help="the Prometheus metrics instead")
    inspect.set_defaults(run=_inspect)
