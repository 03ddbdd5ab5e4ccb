"""``errorflow demo``: a small fleet of runners, a flaky service, and the pipeline.

Everything runs in this process on embedded defaults: the ClickHouse sink (chDB under
``$ERRORFLOW_DATA_DIR``), the stream worker (5-second windows so it shows results
within a minute) and three SDK-driven runners calling a fake ComfyUI that goes down for
a while. At the end the demo prints what the pipeline saw, from ClickHouse.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from typing import Any

from deploy.settings import DeploySettings

__all__ = ["register"]


class FakeComfyUI:
    """Answers in ~20 ms; fails often while ``down``; sometimes runs out of GPU memory.

    (Seeded pseudo-random numbers: a repeatable demo, nothing secret.)"""

    def __init__(self) -> None:
        self.down = False
        self.rng = random.Random(7)  # noqa: S311

    async def run_workflow(self, prompt: str) -> str:
        await asyncio.sleep(0.02)
        if self.down and self.rng.random() < 0.8:
            raise ConnectionResetError("Connection reset by peer (comfyui)")
        if self.rng.random() < 0.02:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if not prompt:
            raise ValueError("prompt must not be empty")
        return f"image-for-{prompt}.png"


async def _runner(
    index: int,
    settings: DeploySettings,
    comfy: FakeComfyUI,
    stop: asyncio.Event,
    stats: dict[str, int],
) -> None:
    from producers import SDKConfig
    from producers.handler import ErrorHandler
    from schemas import ResourceAvailable

    config = SDKConfig(
        kafka_bootstrap_servers=settings.bootstrap_servers,
        data_dir=settings.data_dir,
        runner_id=f"demo-runner-{index}",
        backoff_base_s=0.05,
        backoff_cap_s=0.3,
        command_group="demo-runners",
    )
    async with ErrorHandler(config) as handler:
        handler.circuit_breakers.add_breaker(
            "comfyui", failure_threshold=5, recovery_timeout=5, success_threshold=2
        )

        async def generate(data: dict[str, Any]) -> str:
            handler.record_operation("gpu_allocation", {"gpu": index, "prompt": data["prompt"]})
            result: str = await handler.protect_external_call(
                "comfyui", comfy.run_workflow, data["prompt"]
            )
            return result

        async def release_gpu(data: dict[str, Any]) -> None:
            stats["compensated"] += 1

        # recovery.retry commands from the stream re-run tasks here; compensation
        # commands undo the recorded GPU allocations of tasks that finally failed.
        handler.register_executor(generate, operation_type="image_generation")
        handler.register_compensator("gpu_allocation", release_gpu)
        rng = random.Random(index)  # noqa: S311
        last_free = time.monotonic()
        while not stop.is_set():
            template = rng.choice(["stable-diffusion", "video-gen"])
            prompt = "" if rng.random() < 0.03 else rng.choice(["cat", "sunset", "forest"])

            try:
                await handler.wrap_task_execution(
                    task_id=f"demo-{uuid.uuid4().hex[:10]}",
                    template_id=template,
                    operation_type="image_generation",
                    task_data={"prompt": prompt},
                    execute_func=generate,
                )
                stats["succeeded"] += 1
            except Exception:  # noqa: BLE001 - the pipeline records it; the demo goes on
                stats["failed"] += 1
            if time.monotonic() - last_free > 4:  # a GPU frees up now and then
                last_free = time.monotonic()
                handler.emit(
                    ResourceAvailable,
                    worker_id=str(handler.source.worker_id),
                    resource_kind="gpu",
                    amount=1,
                )
            await asyncio.sleep(0.01)


async def _demo(settings: DeploySettings, seconds: float) -> None:
    from deploy.publish import publish_events
    from schemas import ConfigureBreaker, Source
    from schemas import utc_now as s_utc_now
    from sinks import AsyncClickHouse, ClickHouseSettings, connect
    from sinks import queries as q
    from sinks.analysis import analysis
    from sinks.service import ClickHouseSink, SinkSettings
    from streams.app import create_app
    from streams.settings import WorkerSettings

    ch_settings = ClickHouseSettings()
    clickhouse = AsyncClickHouse(connect(ch_settings))
    run = uuid.uuid4().hex[:6]
    stop, fleet_stop = asyncio.Event(), asyncio.Event()
    sink = ClickHouseSink(
        bootstrap_servers=settings.bootstrap_servers,
        clickhouse=clickhouse,
        settings=SinkSettings(group_id="errorflow-demo-sink"),
    )
    worker = create_app(
        WorkerSettings(
            kafka_bootstrap_servers=settings.bootstrap_servers,
            app_id=f"errorflow-demo-{run}",
            name="demo",
            tumbling_s=5,
            hopping_s=20,
            hop_s=5,
            grace_s=2,
            min_history=4,
            min_rate_attempts=10,
            hold_down_s=10,
            idle_close_s=8,
            breaker_recovery_timeout_s=5,
            breaker_success_threshold=2,
            recovery_retry_base_s=0.5,
            saga_backoff_s=0.5,
        )
    )
    # The demo's own settings for comfyui's fleet breaker (the control topic is compacted:
    # a setting from an earlier run or a test would otherwise apply).
    await publish_events(
        settings.bootstrap_servers,
        [
            ConfigureBreaker(
                source=Source.here(runner_id=f"errorflow-demo-{run}"),
                service="comfyui",
                failure_threshold=5,
                recovery_timeout_s=5,
                success_threshold=2,
            )
        ],
    )
    comfy = FakeComfyUI()
    stats = {"succeeded": 0, "failed": 0, "compensated": 0}
    since = s_utc_now()
    background = [asyncio.create_task(sink.run(stop)), asyncio.create_task(worker.run(stop))]
    print(f"errorflow demo: 3 runners for {seconds:.0f}s; comfyui goes down in the middle")
    await asyncio.sleep(8)  # groups join
    started = time.monotonic()
    runners = [
        asyncio.create_task(_runner(i, settings, comfy, fleet_stop, stats)) for i in range(3)
    ]
    third = seconds / 3
    await asyncio.sleep(third)
    print(f"  t={time.monotonic() - started:4.0f}s comfyui is DOWN   ({stats})")
    comfy.down = True
    await asyncio.sleep(third / 2)
    comfy.down = False
    succeeded_before = stats["succeeded"]
    print(f"  t={time.monotonic() - started:4.0f}s comfyui is back   ({stats})")
    await asyncio.sleep(seconds - third - third / 2)
    fleet_stop.set()
    await asyncio.gather(*runners)
    print(
        f"  t={time.monotonic() - started:4.0f}s fleet stopped     ({stats}); "
        "waiting for windows to close"
    )
    await asyncio.sleep(14)
    stop.set()
    await asyncio.gather(*background)
    result = await clickhouse.run(analysis, clickhouse.client, window_minutes=10)
    errors = result["error_analysis"]
    print("\nWhat the pipeline saw (from ClickHouse):")
    print(
        f"  errors: {errors['total_errors']}  error rate: {errors['error_rate']:.1%}  "
        f"by category: {errors['error_distribution']}"
    )
    for row in await clickhouse.run(q.top_fingerprints, clickhouse.client, limit=3):
        print(
            f"  top error {row['fingerprint']}: {row['error_type']} x{row['count']}, "
            f"retry rescued {row['recovered_tasks']} of {row['retried_tasks']} tasks"
        )
    source = {"source": f"errorflow-demo-{run}"}
    anomalies = await clickhouse.query_rows(
        "SELECT kind, toString(key), round(value, 2), round(score, 1) FROM errorflow.anomalies "
        "WHERE runner_id = {source:String} ORDER BY occurred_at",
        source,
    )
    for kind, key, value, score in anomalies:
        print(f"  anomaly {kind} {key}: value {value}, score {score}")
    alerts = await clickhouse.query_rows(
        "SELECT type, name, toString(labels), summary FROM errorflow.alerts "
        "WHERE runner_id = {source:String} ORDER BY occurred_at",
        source,
    )
    for type_, _name, _labels, summary in alerts:
        print(f"  {type_}: {summary}")
    transitions = await clickhouse.query_rows(
        # Transitions only (a budget change or a re-publish repeats the state later).
        "SELECT service, state, reason FROM errorflow.breaker_states "
        "WHERE runner_id = {source:String} AND occurred_at = since ORDER BY occurred_at",
        source,
    )
    for service, state, reason in transitions:
        print(f"  fleet breaker {service} -> {state} ({reason})")
    by = await clickhouse.run(q.recovery_stats_by, clickhouse.client, since=since)
    for row in by:
        print(
            f"  recovery {row['template_id']}/{row['category']}: "
            f"retries {row['retries_issued']} (released {row['released']}), "
            f"queued {row['queued']}, dead-lettered {row['dead_lettered']}, "
            f"failed fast {row['failed_fast']}; succeeded after retry "
            f"{row['succeeded_after_retry']}"
        )
    print(f"  compensations run by the runners: {stats['compensated']}")
    print(
        f"  after comfyui came back the fleet completed "
        f"{stats['succeeded'] - succeeded_before} tasks"
    )
    print('\nExplore: errorflow sql "SELECT type, count() FROM errorflow.events GROUP BY type"')
    print("         errorflow dlq list")
    clickhouse.close()


def _run(args: argparse.Namespace, settings: DeploySettings) -> int:
    asyncio.run(_demo(settings, args.seconds))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="runners, a flaky service and the whole pipeline")
    demo.add_argument("--seconds", type=float, default=45)
    demo.set_defaults(run=_run)
