"""Re-check Faust's scale-out loss: does a second worker joining lose records?

    python -m benchmarks.faust_scaleout --kafka 127.0.0.1:9092 [--records 60000]

What it does, so the choice of our own engine over Faust can be revisited when Faust
fixes it (README, "Why not Faust"):

1. produces ``--records`` numbered records to a fresh 6-partition topic;
2. starts one Faust worker (at-least-once, the default guarantee) whose agent forwards
   every record's number to an output topic (one by one, or in ``--take`` batches);
3. once a quarter of them went through, starts a second worker of the same app (a
   rebalance, no kill);
4. waits until the output stops growing, then counts: numbers never forwarded (lost),
   numbers forwarded twice (duplicates, allowed at-least-once), and whether the group's
   committed offsets reached the end of the input (so a restart would not redo them).

Measured here with faust-streaming 0.15.3 and Kafka 3.9.1 (issue 11): 1,808 and 4,397
of 60,000 records never processed in two runs while every input offset was committed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

_AGENT = """
import sys, faust
app_id, bootstrap, source, sink, datadir, port, take = sys.argv[1:8]
take = int(take)
app = faust.App(app_id, broker=f"kafka://{bootstrap}", value_serializer="raw",
                datadir=datadir, web_port=int(port), consumer_auto_offset_reset="earliest",
                stream_buffer_maxsize=max(4096, 2 * take))
inbox = app.topic(source, value_type=bytes, value_serializer="raw", key_serializer="raw")
outbox = app.topic(sink, value_type=bytes, value_serializer="raw", key_serializer="raw")

@app.agent(inbox)
async def forward(stream):
    if take > 1:  # batches, as a tuned pipeline reads them (the issue's setting)
        async for values in stream.take(take, within=1):
            for value in values:
                await outbox.send(value=value)
    else:
        async for value in stream:
            await outbox.send(value=value)

sys.argv = sys.argv[:1]
faust.Worker(app, loglevel="warning").execute_from_commandline()
"""


async def _setup(bootstrap: str, source: str, sink: str, records: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(source, 6, 1), NewTopic(sink, 6, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    await producer.start()
    try:
        sent = [
            await producer.send(source, str(n).encode(), key=str(n).encode())
            for n in range(records)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _forwarded(bootstrap: str, sink: str) -> Counter[int]:
    consumer = AIOKafkaConsumer(
        sink, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: Counter[int] = Counter()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1500, max_records=20_000)
            if not batch:
                return seen
            for part in batch.values():
                seen.update(int(r.value) for r in part)
    finally:
        await consumer.stop()


async def _committed_to_end(bootstrap: str, app_id: str, source: str) -> tuple[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=app_id)
    await consumer.start()
    try:
        parts = [TopicPartition(source, p) for p in range(6)]
        ends = await consumer.end_offsets(parts)
        committed = [await consumer.committed(tp) or 0 for tp in parts]
        return sum(committed), sum(ends.values())
    finally:
        await consumer.stop()


def _start(
    app_id: str, bootstrap: str, source: str, sink: str, port: int, log: Path, take: int
) -> Any:
    script = Path(tempfile.mkdtemp(prefix="errorflow-faust-recheck-")) / "agent.py"
    script.write_text(_AGENT)
    datadir = tempfile.mkdtemp(prefix="errorflow-faust-data-")
    args = [
        sys.executable,
        str(script),
        app_id,
        bootstrap,
        source,
        sink,
        datadir,
        str(port),
        str(take),
    ]
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, env=os.environ)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument(
        "--take", type=int, default=1, help="read batches of this many (stream.take), 1: one by one"
    )
    args = parser.parse_args()
    run = uuid.uuid4().hex[:6]
    app_id, source, sink = f"recheck-{run}", f"recheck-in-{run}", f"recheck-out-{run}"
    asyncio.run(_setup(args.kafka, source, sink, args.records))
    logs = Path(tempfile.mkdtemp(prefix="errorflow-faust-logs-"))
    workers = [_start(app_id, args.kafka, source, sink, 6066, logs / "a.log", args.take)]
    try:
        while sum(asyncio.run(_forwarded(args.kafka, sink)).values()) < args.records // 4:
            time.sleep(1)
        workers.append(_start(app_id, args.kafka, source, sink, 6067, logs / "b.log", args.take))
        last, still = -1, 0
        while still < 3:  # three quiet looks in a row (~30 s): it is done, or stuck
            time.sleep(10)
            seen = asyncio.run(_forwarded(args.kafka, sink))
            now = sum(seen.values())
            still = still + 1 if now == last else 0
            last = now
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(30)
    lost = args.records - len(seen)
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    committed, end = asyncio.run(_committed_to_end(args.kafka, app_id, source))
    print(f"records: {args.records:,}; never processed: {lost:,}; duplicates: {duplicates:,}")
    print(f"committed input offsets: {committed:,} of {end:,}; logs in {logs}")
    print("verdict:", "LOSES records on scale-out" if lost else "no loss in this run")


if __name__ == "__main__":
    main()
