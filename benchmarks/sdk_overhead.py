"""Success-path overhead of the SDK against a bare await and popular libraries.

    python -m benchmarks.sdk_overhead [--calls 20000] [--kafka 127.0.0.1:9092]

All variants run in one process, interleaved over several rounds, and the median per
call is reported; compare ratios, not absolute numbers (shared, noisy machines).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiobreaker
import circuitbreaker
import stamina
import tenacity

from producers import SDKConfig
from producers.handler import ErrorHandler
from producers.publisher import KafkaPublisher, PublisherConfig


class HotPathPublisher(KafkaPublisher):
    """The real ``KafkaPublisher.publish`` (the hot path: hand over, never send); the
    benchmark empties its buffer between rounds instead of running the sender."""

    def drain(self) -> None:
        self._pending.clear()


async def noop() -> int:
    return 1


async def noop_task(data: Any) -> int:
    return 1


def _libraries() -> dict[str, Callable[[], Awaitable[Any]]]:
    breaker = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=60))

    @circuitbreaker.circuit(failure_threshold=5, recovery_timeout=60)  # type: ignore[untyped-decorator]
    async def cb_noop() -> int:
        return 1

    @tenacity.retry(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential())
    async def tenacity_noop() -> int:
        return 1

    @stamina.retry(on=ConnectionError, attempts=3)
    async def stamina_noop() -> int:
        return 1

    return {
        "aiobreaker": lambda: breaker.call_async(noop),
        "circuitbreaker": cb_noop,
        "tenacity": tenacity_noop,
        "stamina": stamina_noop,
    }


async def _time(
    func: Callable[[], Awaitable[Any]], calls: int, drain: Callable[[], None] = lambda: None
) -> float:
    """Microseconds per call. ``drain`` runs every 500 calls, as the publisher's sender
    takes batches of 500 off the buffer (its own cost is not the caller's)."""
    started = time.perf_counter()
    for done in range(1, calls + 1):
        await func()
        if done % 500 == 0:
            drain()
    return (time.perf_counter() - started) / calls * 1e6


async def measure(calls: int, rounds: int, kafka: str | None) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp())
    config = SDKConfig(data_dir=tmp, consume_commands=False, runner_id="bench")
    publisher = HotPathPublisher(
        PublisherConfig(bootstrap_servers="unused:1", spool_dir=tmp, max_buffer=10**9)
    )
    handler = ErrorHandler(config, publisher=publisher)
    variants: dict[str, Callable[[], Awaitable[Any]]] = {
        "bare await": noop,
        "protect_external_call": lambda: handler.protect_external_call("svc", noop),
        "wrap_task_execution": lambda: handler.wrap_task_execution(
            "t", "sd", "img", None, noop_task
        ),
        **_libraries(),
    }
    kafka_handler = None
    if kafka:
        kafka_config = SDKConfig(
            kafka_bootstrap_servers=kafka, data_dir=tmp, runner_id="bench-k", consume_commands=False
        )
        kafka_handler = await ErrorHandler(kafka_config).start()
        variants["protect_external_call + Kafka"] = lambda: kafka_handler.protect_external_call(
            "svc", noop
        )
        variants["wrap_task_execution + Kafka"] = lambda: kafka_handler.wrap_task_execution(
            "t", "sd", "img", None, noop_task
        )
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for func in variants.values():  # warm-up
        await _time(func, calls // 10, publisher.drain)
    for _ in range(rounds):
        for name, func in variants.items():
            samples[name].append(await _time(func, calls, publisher.drain))
    if kafka_handler is not None:
        await kafka_handler.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def report(results: dict[str, float]) -> str:
    bare = results["bare await"]
    lines = ["| variant | µs per call | overhead over bare await (µs) |", "|---|---:|---:|"]
    for name, value in results.items():
        lines.append(f"| {name} | {value:.2f} | {value - bare:.2f} |")
    over = {k: v - bare for k, v in results.items()}
    lines.append("")
    lines.append(
        f"protect_external_call / aiobreaker overhead: "
        f"{over['protect_external_call'] / over['aiobreaker']:.2f} (target ≤ 1.0)"
    )
    lines.append(
        f"wrap_task_execution / tenacity overhead: "
        f"{over['wrap_task_execution'] / over['tenacity']:.2f} (target ≤ 0.5)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kafka", default=None, help="bootstrap servers for the +Kafka rows")
    args = parser.parse_args()
    print(report(asyncio.run(measure(args.calls, args.rounds, args.kafka))))


if __name__ == "__main__":
    main()
