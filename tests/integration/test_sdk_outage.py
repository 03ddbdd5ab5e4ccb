"""Publishing survives Kafka going away: nothing lost, no task slowed, spool delivered."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import schemas as s
from deploy.broker import LocalBroker
from producers import SDKConfig
from producers.handler import ErrorHandler
from producers.publisher import KafkaPublisher
from tests.integration.kafka_io import end_offsets, read_since

pytestmark = pytest.mark.kafka

TASKS = "errorflow.task-events"
ROOT = Path(__file__).resolve().parents[2]


async def _run_tasks(handler: ErrorHandler, prefix: str, count: int) -> float:
    """Run ``count`` 5 ms tasks; return the mean wall time per task."""

    async def work(data: dict[str, Any]) -> int:
        await asyncio.sleep(0.005)
        return data["i"]

    started = time.perf_counter()
    for i in range(count):
        await handler.wrap_task_execution(f"{prefix}-{i}", "sd", "image_generation", {"i": i}, work)
    return (time.perf_counter() - started) / count


async def _ids_on_topic(bootstrap: str, since: Any, prefix: str, expected: int) -> set[str]:
    records = await read_since(bootstrap, since, count=expected, timeout_s=60)
    return {
        e.event_id
        for r in records
        if str(getattr(e := s.decode(r.value), "task_id", "")).startswith(prefix)
    }


async def test_broker_outage_neither_slows_tasks_nor_loses_events(
    private_broker: LocalBroker, tmp_path: Path
) -> None:
    """Tasks run as fast with the broker stopped; after restart every event arrives."""
    config = SDKConfig(
        kafka_bootstrap_servers=private_broker.bootstrap,
        data_dir=tmp_path,
        runner_id="outage",
        consume_commands=False,
        send_timeout_s=1.0,
    )
    since = await end_offsets(private_broker.bootstrap, [TASKS])
    handler = await ErrorHandler(config).start()
    publisher = handler.publisher
    assert isinstance(publisher, KafkaPublisher)
    up = await _run_tasks(handler, "up", 40)
    await asyncio.to_thread(private_broker.stop)
    down = await _run_tasks(handler, "down", 40)
    await asyncio.sleep(3)  # the sender notices and spools
    assert publisher.stats()["spooled"] > 0
    await asyncio.to_thread(private_broker.start)
    assert await publisher.flush(timeout_s=60)
    await handler.close()
    stats = publisher.stats()
    assert stats["dropped"] == 0
    assert down < up * 2 + 0.005, f"tasks slowed from {up * 1000:.1f} ms to {down * 1000:.1f} ms"
    arrived_up = await _ids_on_topic(private_broker.bootstrap, since, "up-", 160)
    arrived_down = await _ids_on_topic(private_broker.bootstrap, since, "down-", 160)
    assert (len(arrived_up), len(arrived_down)) == (80, 80)  # started + succeeded per task


RUNNER = textwrap.dedent("""
    import asyncio, sys
    from producers import SDKConfig
    from producers.handler import ErrorHandler

    async def main(mode):
        config = SDKConfig(kafka_bootstrap_servers=sys.argv[2], data_dir=sys.argv[3],
                           runner_id="killed", consume_commands=False, send_timeout_s=1.0)
        handler = await ErrorHandler(config).start()
        if mode == "produce":
            async def work(data):
                return data
            for i in range(30):
                await handler.wrap_task_execution(f"killed-{i}", "sd", "img", {"i": i}, work)
            while handler.publisher.stats()["spooled"] < 60:
                await asyncio.sleep(0.1)
            print("SPOOLED", flush=True)
            await asyncio.sleep(3600)
        else:
            ok = await handler.publisher.flush(timeout_s=60)
            print("FLUSHED" if ok else "TIMEOUT", handler.publisher.stats(), flush=True)
            await handler.close()

    asyncio.run(main(sys.argv[1]))
""")


async def test_killed_process_spool_is_delivered_by_the_next(
    private_broker: LocalBroker, tmp_path: Path
) -> None:
    """A runner SIGKILLed while Kafka was down leaves a spool its successor delivers."""
    since = await end_offsets(private_broker.bootstrap, [TASKS])
    await asyncio.to_thread(private_broker.stop)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", RUNNER]
    first = subprocess.Popen(
        [*args, "produce", private_broker.bootstrap, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(first.stdout.readline), 60)  # type: ignore[union-attr]
        assert line.strip() == "SPOOLED"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert list((tmp_path / "spool" / "killed").glob("*.seg"))
    await asyncio.to_thread(private_broker.start)
    second = await asyncio.to_thread(
        subprocess.run,
        [*args, "deliver", private_broker.bootstrap, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert second.stdout.startswith("FLUSHED"), second.stdout + second.stderr
    arrived = await _ids_on_topic(private_broker.bootstrap, since, "killed-", 60)
    assert len(arrived) == 60
    assert not list((tmp_path / "spool" / "killed").glob("*.seg"))


async def test_an_oversized_task_does_not_block_the_ones_after_it(
    private_broker: LocalBroker, tmp_path: Path
) -> None:
    """A task with 2 MB of task_data, then a normal one: the normal one's events arrive
    within seconds; the big one's task.started arrives with a truncation marker."""
    config = SDKConfig(
        kafka_bootstrap_servers=private_broker.bootstrap,
        data_dir=tmp_path,
        runner_id="big",
        consume_commands=False,
        send_timeout_s=2.0,
    )
    since = await end_offsets(private_broker.bootstrap, [TASKS])

    async def work(data: dict[str, Any]) -> str:
        return "ok"

    async with ErrorHandler(config) as handler:
        await handler.wrap_task_execution("big-1", "sd", "img", {"blob": "x" * 2_000_000}, work)
        await handler.wrap_task_execution("big-2", "sd", "img", {"i": 2}, work)
        assert await handler.publisher.flush(timeout_s=20)
        stats = handler.publisher.stats()
    records = await read_since(private_broker.bootstrap, since, count=4, timeout_s=30)
    events = [s.decode(r.value) for r in records]
    mine = [e for e in events if getattr(e, "task_id", "").startswith("big-")]
    assert sorted((e.task_id, e.type) for e in mine) == [  # type: ignore[attr-defined]
        ("big-1", "task.started"),
        ("big-1", "task.succeeded"),
        ("big-2", "task.started"),
        ("big-2", "task.succeeded"),
    ]
    started = next(e for e in mine if e.task_id == "big-1" and e.type == "task.started")  # type: ignore[attr-defined]
    assert started.task_data["_errorflow_truncated"] is True  # type: ignore[attr-defined]
    assert stats["truncated"] == 1
    assert stats["dropped"] == 0


DEFAULT_RUNNER = textwrap.dedent("""
    import asyncio, sys
    from producers import SDKConfig
    from producers.handler import ErrorHandler

    async def main(bootstrap, data_dir, prefix):
        # Both processes keep every default: the same runner_id, the same spool path.
        config = SDKConfig(kafka_bootstrap_servers=bootstrap, data_dir=data_dir,
                           consume_commands=False, send_timeout_s=1.0)
        handler = await ErrorHandler(config).start()
        async def work(data):
            return data
        for i in range(25):
            await handler.wrap_task_execution(f"{prefix}-{i}", "sd", "img", {"i": i}, work)
        while handler.publisher.stats()["spooled"] < 50:
            await asyncio.sleep(0.1)
        print("SPOOLED", flush=True)
        sys.stdin.readline()  # until the test says the broker is back
        ok = await handler.publisher.flush(timeout_s=60)
        print("FLUSHED" if ok else "TIMEOUT", flush=True)
        await handler.close()

    asyncio.run(main(*sys.argv[1:4]))
""")


async def test_two_default_runners_in_an_outage_both_deliver_everything(
    private_broker: LocalBroker, tmp_path: Path
) -> None:
    """Two processes with the default runner_id during an outage: after the broker
    returns, all events of both arrive (the second spooled privately, nothing stranded)."""
    since = await end_offsets(private_broker.bootstrap, [TASKS])
    await asyncio.to_thread(private_broker.stop)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runners = [
        subprocess.Popen(
            [sys.executable, "-c", DEFAULT_RUNNER, private_broker.bootstrap, str(tmp_path), name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in ("first", "second")
    ]
    try:
        for runner in runners:
            line = await asyncio.wait_for(asyncio.to_thread(runner.stdout.readline), 60)  # type: ignore[union-attr]
            assert line.strip() == "SPOOLED"
        await asyncio.to_thread(private_broker.start)
        for runner in runners:
            runner.stdin.write("go\n")  # type: ignore[union-attr]
            runner.stdin.flush()  # type: ignore[union-attr]
        for runner in runners:
            line = await asyncio.wait_for(asyncio.to_thread(runner.stdout.readline), 90)  # type: ignore[union-attr]
            assert line.strip() == "FLUSHED"
    finally:
        for runner in runners:
            runner.kill()
            runner.wait()
    first = await _ids_on_topic(private_broker.bootstrap, since, "first-", 100)
    second = await _ids_on_topic(private_broker.bootstrap, since, "second-", 100)
    assert (len(first), len(second)) == (50, 50)
