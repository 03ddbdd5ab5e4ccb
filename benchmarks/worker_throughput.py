"""Stream worker throughput beside a trivial Faust agent and a raw aiokafka loop, on
the same topics of the real broker, in one run.

    python -m benchmarks.worker_throughput --kafka 127.0.0.1:9092 [--events 200000]

Each reader starts from the beginning of errorflow.task-events and call-events (fresh
consumer groups) and is timed from its first record to the last.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from statistics import median

from aiokafka import AIOKafkaConsumer

from benchmarks.traffic import produce_mix, records_on
from schemas.topics import CALL_EVENTS, TASK_EVENTS
from streams.app import create_app
from streams.settings import WorkerSettings

TOPICS = [TASK_EVENTS.name, CALL_EVENTS.name]


async def raw_loop(bootstrap: str, total: int) -> float:
    consumer = AIOKafkaConsumer(
        *TOPICS,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 << 20,
    )
    await consumer.start()
    seen, started = 0, 0.0
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batch.values():
                if not started:
                    started = time.perf_counter()
                for _ in records:
                    seen += 1
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - started)


async def _still_running(task: asyncio.Task[None]) -> None:
    """A worker that stopped (it raised) fails the benchmark instead of hanging it."""
    if task.done():
        task.result()
        raise RuntimeError("the worker stopped before it consumed the records")
    await asyncio.sleep(0.01)


async def worker(bootstrap: str, total: int) -> float:
    settings = WorkerSettings(
        kafka_bootstrap_servers=bootstrap,
        app_id=f"bench-{uuid.uuid4().hex[:6]}",
        name="bench",
        start_from="earliest",
    )
    app = create_app(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    while app.ingest.consumed == 0:
        await _still_running(task)
    started, first = time.perf_counter(), app.ingest.consumed
    while app.ingest.consumed < total:
        await _still_running(task)
    rate = (app.ingest.consumed - first) / (time.perf_counter() - started)
    stop.set()
    await task
    return rate


def faust_trivial(bootstrap: str, total: int, take: int = 0, *, tuned: bool = False) -> float:
    mode = ["tuned"] if tuned else []
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.faust_trivial",
            bootstrap,
            str(total),
            str(take),
            *mode,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    # Faust routes print() through its logger: find "RATE <n>" anywhere in a line.
    rates = re.findall(r"RATE (\d+)", out.stdout + out.stderr)
    if not rates:
        raise RuntimeError(
            f"the Faust agent printed no rate:\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
        )
    return float(rates[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument(
        "--events",
        type=int,
        default=150_000,
        help="events to produce first; each reader is timed over that many",
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(produce_mix(args.kafka, args.events))
    print(f"produced {args.events:,} events", flush=True)
    total = min(args.events, asyncio.run(records_on(args.kafka, TOPICS)))
    readers: dict[str, Callable[[], float]] = {
        "raw aiokafka consume loop (floor of the machine)": lambda: asyncio.run(
            raw_loop(args.kafka, total)
        ),
        "trivial Faust agent": lambda: faust_trivial(args.kafka, total),
        "trivial Faust agent, tuned (uvloop, 8 MB fetches, take_events(2000))": lambda: (
            faust_trivial(args.kafka, total, take=2000, tuned=True)
        ),
        "errorflow worker (all stages, exactly once)": lambda: asyncio.run(
            worker(args.kafka, total)
        ),
    }
    # Interleaved rounds, medians: this machine's speed drifts by ±30 % within minutes.
    rates: dict[str, list[float]] = {name: [] for name in readers}
    for round_ in range(args.rounds):
        for name, read in readers.items():
            rates[name].append(read())
            print(f"round {round_ + 1}: {name}: {rates[name][-1]:,.0f}/s", flush=True)
    print("| reader | events/s (median) | min – max |")
    print("|---|---:|---:|")
    for name, values in rates.items():
        print(f"| {name} | {median(values):,.0f} | {min(values):,.0f} – {max(values):,.0f} |")
    ours = median(rates["errorflow worker (all stages, exactly once)"])
    tuned = next(v for k, v in rates.items() if "tuned" in k)
    raw = rates["raw aiokafka consume loop (floor of the machine)"]
    print(f"| worker / tuned Faust agent (target ≥ 2) | {ours / median(tuned):.2f} | |")
    print(f"| worker / raw loop (target ≥ 0.2) | {ours / median(raw):.2f} | |")
    print(f"({args.rounds} rounds; each reader timed over the first {total:,} records)")


if __name__ == "__main__":
    main()
