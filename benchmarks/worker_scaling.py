"""Two worker processes against one, and the time from a SIGKILL to emitting again.

    python -m benchmarks.worker_scaling --kafka 127.0.0.1:9092 [--events 100000]

- **Scaling**: the same backlog is read by one ``errorflow worker`` process, then by two
  (fresh app ids, from the earliest offset); each run is timed from the ingest group's
  first committed progress to its committed offsets reaching the end of both input
  topics — what a user sees as "the backlog is through".
- **SIGKILL to emitting**: a worker consumes a trickle of calls (one per 50 ms); it is
  SIGKILLed and started again under the same ``ERRORFLOW_WORKER_NAME``; timed from the
  kill to the first record the restarted worker commits to its partials topic.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import schemas as s
from benchmarks.traffic import produce_mix, records_on
from schemas.topics import CALL_EVENTS, TASK_EVENTS

ROOT = Path(__file__).resolve().parents[1]
TOPICS = [TASK_EVENTS.name, CALL_EVENTS.name]


def _worker(bootstrap: str, app_id: str, name: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ERRORFLOW_WORKER_APP_ID": app_id,
        "ERRORFLOW_WORKER_NAME": name,
        "ERRORFLOW_WORKER_START_FROM": "earliest",
        "ERRORFLOW_WORKER_METRICS_PORT": "0",
        "ERRORFLOW_LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )


async def _progress(bootstrap: str, group: str) -> tuple[int, int]:
    """(committed, end) summed over both input topics for ``group``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        parts = [
            TopicPartition(t, p)
            for t in TOPICS
            for p in sorted(consumer.partitions_for_topic(t) or range(6))
        ]
        ends = await consumer.end_offsets(parts)
        committed = 0
        for tp in parts:
            committed += await consumer.committed(tp) or 0
        return committed, sum(ends.values())
    finally:
        await consumer.stop()


def scaling(bootstrap: str, processes: int, logs: Path) -> float:
    app_id = f"scale-{uuid.uuid4().hex[:6]}"
    group = f"{app_id}-ingest"
    workers = [
        _worker(bootstrap, app_id, f"w{i}", logs / f"{app_id}-{i}.log") for i in range(processes)
    ]
    try:
        start_committed = None
        first = time.monotonic()
        while True:
            committed, end = asyncio.run(_progress(bootstrap, group))
            if start_committed is None and committed > 0:
                start_committed, first = committed, time.monotonic()
            if committed >= end and start_committed is not None:
                return (end - start_committed) / max(time.monotonic() - first, 1e-6)
            time.sleep(0.2)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(60)


async def _trickle(bootstrap: str, service: str, stop: asyncio.Event) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    source = s.Source.here(runner_id="bench-restart")
    try:
        while not stop.is_set():
            call = s.CallCompleted(service=service, outcome="success", duration_ms=1, source=source)
            await producer.send_and_wait(CALL_EVENTS.name, s.encode(call), key=service.encode())
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()


async def _first_output_after(bootstrap: str, topic: str, since: float, timeout_s: float) -> float:
    """Seconds from ``since`` (monotonic) to the first committed record on ``topic``
    written after the call (its partitions positioned at their ends first)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        isolation_level="read_committed",
        auto_offset_reset="latest",
    )
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        for tp in consumer.assignment():
            await consumer.position(tp)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await consumer.getmany(timeout_ms=100):
                return time.monotonic() - since
        raise TimeoutError(f"nothing on {topic} within {timeout_s}s")
    finally:
        await consumer.stop()


async def sigkill_to_emitting(bootstrap: str, logs: Path) -> float:
    app_id = f"restart-{uuid.uuid4().hex[:6]}"
    log = logs / f"{app_id}.log"
    stop = asyncio.Event()
    trickle = asyncio.create_task(_trickle(bootstrap, f"svc-{app_id}", stop))
    worker = _worker(bootstrap, app_id, "w1", log)
    try:
        await _first_output_after(bootstrap, f"{app_id}-partials", time.monotonic(), 120)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        killed = time.monotonic()
        worker = _worker(bootstrap, app_id, "w1", log)
        return await _first_output_after(bootstrap, f"{app_id}-partials", killed, 120)
    finally:
        stop.set()
        await trickle
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="errorflow-scaling-"))
    asyncio.run(produce_mix(args.kafka, args.events))
    print(f"backlog: {asyncio.run(records_on(args.kafka, TOPICS)):,} records", flush=True)
    one, two = [], []
    for round_ in range(args.rounds):  # interleaved
        one.append(scaling(args.kafka, 1, logs))
        two.append(scaling(args.kafka, 2, logs))
        print(f"round {round_ + 1}: one {one[-1]:,.0f}/s, two {two[-1]:,.0f}/s", flush=True)
    restarts = [asyncio.run(sigkill_to_emitting(args.kafka, logs)) for _ in range(args.rounds)]
    print(f"one worker process: {sorted(one)} events/s")
    print(f"two worker processes: {sorted(two)} events/s")
    print(f"SIGKILL to emitting again (same name): {[round(r, 1) for r in restarts]} s")
    print(f"logs in {logs}")


if __name__ == "__main__":
    main()
