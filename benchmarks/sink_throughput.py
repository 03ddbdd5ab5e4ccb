"""Sink throughput (Kafka → chDB, one process), trend-query latency over 10M events, and
the engine's own INSERT SELECT ceiling, measured in one run.

    python -m benchmarks.sink_throughput --kafka 127.0.0.1:9092 [--events 300000]
                                         [--history 10000000]

Uses a fresh chDB directory and a fresh consumer group; the sink reads every errorflow
topic from the beginning, so throughput counts every record on them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.traffic import produce_mix, records_on
from schemas.topics import TOPICS
from sinks import AsyncClickHouse, ClickHouseSettings, connect
from sinks import queries as q
from sinks.service import ClickHouseSink, SinkSettings

_PAYLOAD_SQL = """
concat('{"event_id":"', toString(generateUUIDv4(number)), '","type":"',
  ['task.succeeded','task.attempt_failed','task.failed','call.completed'][number % 4 + 1],
  '","schema_version":1,"occurred_at":"',
  formatDateTime(now64(3) - toIntervalSecond(number % {span}), '%Y-%m-%dT%H:%i:%S.000Z'),
  '","source":{"runner_id":"bench","worker_id":"w","host":"h","pid":1,"sdk_version":"0.1.0"},',
  '"task_id":"t', toString(number), '","template_id":"tpl', toString(number % 5),
  '","operation_type":"img","attempt":1,"attempts":1,"service":"svc', toString(number % 3),
  '","outcome":"failure","duration_ms":1.5,',
  '"error":{"category":"', ['transient','resource','validation','permanent'][number % 4 + 1],
  '","error_type":"X","message":"m","fingerprint":"f', toString(number % 50),
  '","severity":"high","retryable":true,"rule":"r"}}')
"""


def engine_ceiling(client: object, rows: int) -> float:
    """INSERT SELECT of generated payloads into the same table: the engine's own rate."""
    sql = (
        "INSERT INTO errorflow.events (_topic, _partition, _offset, payload) "
        "SELECT 'bench', 0, number, "
        + _PAYLOAD_SQL.replace("{span}", "86400")
        + f" FROM numbers({rows})"
    )
    started = time.perf_counter()
    client.command(sql)  # type: ignore[attr-defined]
    return rows / (time.perf_counter() - started)


async def sink_rate(bootstrap: str, clickhouse: AsyncClickHouse) -> tuple[float, int]:
    """Records per second from Kafka into chDB for everything on the topics."""

    total = await records_on(bootstrap, [t.name for t in TOPICS])
    sink = ClickHouseSink(
        bootstrap_servers=bootstrap,
        clickhouse=clickhouse,
        settings=SinkSettings(group_id=f"bench-{uuid.uuid4().hex[:8]}"),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    while sink.stats.consumed == 0:
        await asyncio.sleep(0.01)
    started = time.perf_counter()
    first = sink.stats.consumed
    while sink.stats.consumed < total:
        await asyncio.sleep(0.01)
    await sink.flush()
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return (sink.stats.consumed - first) / elapsed, total


def history(client: object, rows: int) -> None:
    """``rows`` events spread over the last 7 days, in 1M-row inserts."""
    chunk = 1_000_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        client.command(  # type: ignore[attr-defined]
            "INSERT INTO errorflow.events (_topic, _partition, _offset, payload) "
            "SELECT 'history', 0, number, "
            + _PAYLOAD_SQL.replace("{span}", str(7 * 86400))
            + f" FROM numbers({start}, {n})"
        )


def latency_ms(func: object, repeats: int = 15) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        func()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--history", type=int, default=10_000_000)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="errorflow-bench-"))
    client = connect(ClickHouseSettings(errorflow_data_dir=directory))
    clickhouse = AsyncClickHouse(client)

    asyncio.run(produce_mix(args.kafka, args.events))
    rate, total = asyncio.run(sink_rate(args.kafka, clickhouse))
    ceiling = engine_ceiling(client, 1_000_000)
    history(client, args.history)
    count = client.query("SELECT count() FROM errorflow.events").result_rows[0][0]
    now = datetime.now(UTC)
    day = latency_ms(lambda: q.error_trend(client, since=now - timedelta(hours=24), until=now))
    week_minute = latency_ms(
        lambda: q.error_trend(client, since=now - timedelta(days=7), until=now)
    )
    week_hour = latency_ms(
        lambda: q.error_trend(client, interval="hour", since=now - timedelta(days=7), until=now)
    )
    print("| measure | value |")
    print("|---|---:|")
    print(f"| sink: Kafka → chDB, one process ({total:,} records) | {rate:,.0f} events/s |")
    print(f"| engine ceiling: INSERT SELECT into `events` (1M rows) | {ceiling:,.0f} rows/s |")
    print(f"| sink / engine ceiling | {rate / ceiling:.2f} |")
    print(f"| trend 24 h per minute over {count:,} events | {day:.1f} ms |")
    print(f"| trend 7 days per minute | {week_minute:.1f} ms |")
    print(f"| trend 7 days per hour | {week_hour:.1f} ms |")
    clickhouse.close()


if __name__ == "__main__":
    main()
