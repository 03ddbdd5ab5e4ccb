"""A trivial Faust agent (counts records) for benchmarks/worker_throughput.py.

Run as ``python -m benchmarks.faust_trivial <bootstrap> <total> [<take>] [tuned]``;
prints records/s once ``total`` records were seen, then exits. With ``take`` the agent
reads batches of up to that many records (``stream.take``). ``tuned`` is what a user
tuning Faust for speed would pick (issue 11's measurements): uvloop, 8 MB fetches,
10k records per poll and ``stream.take_events`` batches.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from typing import Any

import faust


def main() -> None:
    bootstrap, total = sys.argv[1], int(sys.argv[2])
    take = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    tuned = len(sys.argv) > 4 and sys.argv[4] == "tuned"
    options: dict[str, Any] = {}
    if tuned:
        options = {
            "consumer_max_fetch_size": 8 << 20,
            "broker_max_poll_records": 10_000,
            "stream_buffer_maxsize": 20_000,
        }
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            print("uvloop not installed: tuned without it", flush=True)
    app = faust.App(
        f"bench-trivial-{uuid.uuid4().hex[:6]}",
        broker=f"kafka://{bootstrap}",
        value_serializer="raw",
        web_enabled=False,
        store="memory://",
        # Faust makes a data directory even for memory stores: not in the repository.
        datadir=tempfile.mkdtemp(prefix="errorflow-faust-bench-"),
        consumer_auto_offset_reset="earliest",
        **options,
    )
    topic = app.topic(
        "errorflow.task-events",
        "errorflow.call-events",
        value_type=bytes,
        value_serializer="raw",
        key_serializer="raw",
    )
    seen = {"n": 0, "t": 0.0}

    def counted(n: int) -> None:
        if seen["n"] == 0:
            seen["t"] = time.perf_counter()
        seen["n"] += n
        if seen["n"] >= total:
            rate = (seen["n"] - 1) / (time.perf_counter() - seen["t"])
            print(f"\nRATE {rate:.0f}", flush=True)
            os._exit(0)

    @app.agent(topic)
    async def count(stream):  # type: ignore[no-untyped-def]
        if take and tuned:
            async for batch in stream.take_events(take, within=0.2):
                counted(len(batch))
        elif take:
            async for batch in stream.take(take, within=0.2):
                counted(len(batch))
        else:
            async for _ in stream:
                counted(1)

    sys.argv = sys.argv[:1]  # the Worker reads the command line too
    faust.Worker(app, loglevel="warning").execute_from_commandline()


if __name__ == "__main__":
    main()
