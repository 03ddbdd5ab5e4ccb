"""A runner in its own process that fails calls to one service, then exits.

``python -m tests.integration.failing_runner BOOTSTRAP SERVICE WORKER_ID COUNT DATA_DIR``
prints the wall-clock time of its last failure after its events are flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

from producers import SDKConfig
from producers.handler import ErrorHandler


async def main(bootstrap: str, service: str, worker: str, count: int, data_dir: str) -> None:
    config = SDKConfig(
        kafka_bootstrap_servers=bootstrap,
        runner_id=f"it-{worker}",
        worker_id=worker,
        data_dir=Path(data_dir),
        consume_commands=False,
    )

    async def refuse() -> None:
        raise ConnectionRefusedError(f"{service} refused the connection")

    async with ErrorHandler(config) as handler:
        for _ in range(count):
            with contextlib.suppress(ConnectionRefusedError):
                await handler.protect_external_call(service, refuse)
        last = time.time()
    print(last, flush=True)


if __name__ == "__main__":
    bootstrap, service, worker, count, data_dir = sys.argv[1:6]
    asyncio.run(main(bootstrap, service, worker, int(count), data_dir))
