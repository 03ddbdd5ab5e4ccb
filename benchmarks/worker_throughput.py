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

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import schemas as s
from schemas.topics import CALL_EVENTS, TASK_EVENTS
from streams.app import create_app
from streams.settings import WorkerSettings

TOPICS = [TASK_EVENTS.name, CALL_EVENTS.name]


async def produce(bootstrap: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    source = s.Source.here(runner_id="bench")
    error = s.ErrorInfo(
        category="transient",
        error_type="X",
        message="m",
        fingerprint="f",
        severity="medium",
        retryable=True,
        rule="r",
        service="comfyui",
    )
    samples = [
        s.TaskAttemptFailed(
            task_id="t",
            template_id="sd",
            operation_type="img",
            attempt=1,
            error=error,
            will_retry=True,
            source=source,
        ),
        s.TaskSucceeded(
            task_id="t",
            template_id="sd",
            operation_type="img",
            attempt=2,
            duration_ms=5,
            source=source,
        ),
        s.CallCompleted(service="comfyui", outcome="success", duration_ms=3, source=source),
    ]
    try:
        for i in range(count):
            event = samples[i % 3]
            await producer.send(
                s.topic_of(event).name,
                s.encode(event),
                key=s.key_of(event).encode(),
                headers=[("type", event.type.encode())],
            )
        await producer.flush()
    finally:
        await producer.stop()


async def total_records(bootstrap: str) -> int:
    meta = AIOKafkaProducer(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await meta.start()
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in TOPICS for p in await meta.partitions_for(t)]
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()
        await meta.stop()


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
        await asyncio.sleep(0.01)
    started, first = time.perf_counter(), app.ingest.consumed
    while app.ingest.consumed < total:
        await asyncio.sleep(0.01)
    rate = (app.ingest.consumed - first) / (time.perf_counter() - started)
    stop.set()
    await task
    return rate


def faust_trivial(bootstrap: str, total: int) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.faust_trivial", bootstrap, str(total)],
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
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    asyncio.run(produce(args.kafka, args.events))
    total = asyncio.run(total_records(args.kafka))
    raw = asyncio.run(raw_loop(args.kafka, total))
    trivial = faust_trivial(args.kafka, total)
    ours = asyncio.run(worker(args.kafka, total))
    print("| reader | events/s |")
    print("|---|---:|")
    print(f"| raw aiokafka consume loop (floor of the machine) | {raw:,.0f} |")
    print(f"| trivial Faust agent | {trivial:,.0f} |")
    print(
        f"| errorflow worker (decode, partials, windows, detection, exactly once) | {ours:,.0f} |"
    )
    print(f"| worker / trivial Faust agent | {ours / trivial:.2f} |")
    print(f"({total:,} records on the topics)")


if __name__ == "__main__":
    main()
