"""Fleet breaker detection latency: from the failure that crosses the threshold to OPEN
seen by another runner's SDK, over many trials, through a real worker process.

    python -m benchmarks.breaker_latency --kafka 127.0.0.1:9092 [--trials 100]

Runner A (this process) fails ``failure_threshold`` calls to a fresh service; the clock
starts when the last failing call returns. Runner B (this process, a separate SDK
instance that never called the service) polls its breaker until the fleet state is
OPEN. Both runners' Kafka clients are separate; the worker is ``errorflow worker``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from producers import SDKConfig
from producers.handler import ErrorHandler

ROOT = Path(__file__).resolve().parents[1]


async def _refuse() -> None:
    raise ConnectionRefusedError("refused")


def start_worker(bootstrap: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ERRORFLOW_WORKER_APP_ID": f"bench-breaker-{uuid.uuid4().hex[:6]}",
        "ERRORFLOW_WORKER_NAME": "bench",
        "ERRORFLOW_LOG_LEVEL": "INFO",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker"],
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


async def wait_ready(log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while "errorflow.worker.assigned stage=breakers" not in log.read_text():
        if time.monotonic() > deadline:
            raise SystemExit(f"worker not ready; see {log}")
        await asyncio.sleep(0.2)


async def trial(failing: ErrorHandler, watching: ErrorHandler, threshold: int) -> float:
    service = f"bench-{uuid.uuid4().hex[:8]}"
    breaker = watching.circuit_breakers.get(service)
    for _ in range(threshold):
        with contextlib.suppress(ConnectionRefusedError):
            await failing.protect_external_call(service, _refuse)
        failing.circuit_breakers.get(service).reset()  # keep A's local breaker out of it
    crossed = time.perf_counter()
    while breaker._cluster is None or breaker._cluster.state != "open":
        if time.perf_counter() - crossed > 10:
            raise SystemExit(f"{service}: OPEN not seen in 10 s")
        await asyncio.sleep(0.0005)
    return (time.perf_counter() - crossed) * 1000


async def run(bootstrap: str, trials: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="errorflow-bench-breaker-"))
    log = tmp / "worker.log"
    worker = start_worker(bootstrap, log)

    def runner(name: str) -> ErrorHandler:
        return ErrorHandler(
            SDKConfig(
                kafka_bootstrap_servers=bootstrap,
                data_dir=tmp,
                runner_id=f"bench-{name}",
                worker_id=name,
                command_group=f"bench-{uuid.uuid4().hex[:6]}",
            )
        )

    try:
        await wait_ready(log)
        async with (
            runner("a") as failing,
            runner("b") as watching,
        ):
            await asyncio.sleep(2.0)  # B's breaker-state consumer is at the end of the topic
            for _ in range(3):  # warm-up: connections, metadata, first transactions
                await trial(failing, watching, 5)
            latencies = [await trial(failing, watching, 5) for _ in range(trials)]
    finally:
        worker.terminate()
        worker.wait(30)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"breaker detection latency over {trials} trials (failure → OPEN in another SDK):")
    print(f"  p50 {p50:.1f} ms   p99 {p99:.1f} ms   max {latencies[-1]:.1f} ms")
    print(f"  target p99 <= 250 ms: {'met' if p99 <= 250 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(run(args.kafka, args.trials))


if __name__ == "__main__":
    main()
