"""One valid instance of every record type, for round-trip tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import schemas as s

T0 = datetime(2026, 11, 28, 12, 0, 0, 123000, tzinfo=UTC)
SOURCE = s.Source(
    runner_id="runner-a", worker_id="gpu-1", host="host-1", pid=42, sdk_version="0.1.0"
)


def error(category: s.Category = "transient") -> s.ErrorInfo:
    return s.ErrorInfo(
        category=category,
        error_type="builtins.ConnectionResetError",
        message="Connection reset by peer",
        fingerprint="3f2a9c",
        severity="medium",
        retryable=category == "transient",
        rule="builtin:connection",
        service="comfyui",
    )


def every_type() -> list[s.Envelope]:
    """A fresh instance of each of the 26 record types (new event ids each call)."""
    task = {
        "task_id": "task-1",
        "template_id": "stable-diffusion",
        "operation_type": "image_generation",
        "attempt": 1,
        "source": SOURCE,
        "occurred_at": T0,
    }
    env = {"source": SOURCE, "occurred_at": T0}
    cmd = {**env, "command_id": s.command_id("cause-1"), "causation_id": "cause-1"}
    return [
        s.TaskStarted(**task, task_data={"prompt": "A beautiful landscape"}),
        s.OperationRecorded(
            **task,
            operation_id="op-1",
            operation_kind="file_upload",
            data={"file_path": "/tmp/input.mp4"},
        ),
        s.TaskAttemptFailed(**task, error=error(), will_retry=True, retry_delay_s=0.5),
        s.TaskSucceeded(**task, duration_ms=1234.5),
        s.TaskFailed(
            **task,
            error=error("resource"),
            attempts=1,
            task_data={"prompt": "x"},
            resource=s.ResourceNeed(kind="gpu", amount=1),
        ),
        s.CompensationCompleted(**env, task_id="task-1", operation_id="op-1", command_id="c-1"),
        s.CompensationFailed(
            **env, task_id="task-1", operation_id="op-1", command_id="c-1", error=error("permanent")
        ),
        s.CallCompleted(
            **env,
            service="comfyui",
            outcome="failure",
            duration_ms=30.0,
            task_id="task-1",
            error=error(),
        ),
        s.WorkerHeartbeat(
            **env,
            worker_id="gpu-1",
            interval_s=10,
            cpu_percent=12.5,
            memory_rss_bytes=10**9,
            disk_free_bytes=10**10,
            disk_total_bytes=10**11,
            queue_depth=3,
            in_flight=1,
            models=[s.ModelStatus(name="sdxl", checksum_ok=True)],
            gpu=[s.GpuStatus(index=0, memory_used_bytes=10, memory_total_bytes=100)],
        ),
        s.ResourceAvailable(**env, worker_id="gpu-1", resource_kind="gpu", amount=1),
        s.HealingResult(
            **env,
            command_id="c-9",
            worker_id="gpu-1",
            action="clear_cache",
            status="done",
            details={"freed_bytes": 1024},
        ),
        s.RetryTask(
            **cmd,
            task_id="task-1",
            template_id="stable-diffusion",
            operation_type="image_generation",
            attempt=2,
            not_before=T0 + timedelta(seconds=2),
            reason="transient error",
        ),
        s.QueueTask(**cmd, task_id="task-1", reason="out of GPU memory", resource_kind="gpu"),
        s.DeadLetterTask(**cmd, task_id="task-1", reason="permanent error"),
        s.FailTaskFast(
            **cmd, task_id="task-1", reason="validation", notification="The prompt is empty."
        ),
        s.CompensateOperation(
            **cmd,
            task_id="task-1",
            operation_id="op-1",
            operation_kind="file_upload",
            data={"file_path": "/tmp/x"},
            step=1,
            total_steps=2,
        ),
        s.RunHealingAction(
            **{**cmd, "expires_at": T0 + timedelta(minutes=5)},
            worker_id="gpu-1",
            action="clear_cache",
            params={},
            reason="disk low",
        ),
        s.BreakerStateChanged(
            **env,
            service="comfyui",
            state="open",
            since=T0,
            reason="5 consecutive failures",
            failure_count=5,
            calls=9,
            failure_rate=0.55,
            workers_failing=2,
        ),
        s.ResetBreaker(**env, service="comfyui"),
        s.ConfigureBreaker(
            **env,
            service="comfyui",
            failure_threshold=5,
            recovery_timeout_s=120,
            success_threshold=3,
        ),
        s.SetAlertThresholds(
            **env, error_rate=0.2, specific_error_count=20, recovery_failure_rate=0.25
        ),
        s.AnomalyDetected(
            **env,
            kind="error_spike",
            key={"service": "comfyui"},
            value=40,
            baseline=2,
            spread=1.5,
            score=25.3,
            window_start=T0,
            window_end=T0 + timedelta(minutes=1),
        ),
        s.AlertFiring(
            **env,
            alert_id="a-1",
            name="high_error_rate",
            severity="high",
            labels={"service": "comfyui"},
            value=0.4,
            threshold=0.15,
            summary="error rate 40% on comfyui",
        ),
        s.AlertResolved(
            **env,
            alert_id="a-1",
            name="high_error_rate",
            severity="high",
            labels={"service": "comfyui"},
            value=0.01,
            threshold=0.15,
            summary="error rate back to 1% on comfyui",
        ),
        s.TaskDeadLettered(
            **env,
            task_id="task-1",
            template_id="stable-diffusion",
            operation_type="image_generation",
            attempts=3,
            errors=[error("permanent")],
            task_data={"prompt": "x"},
        ),
        s.PoisonRecorded(
            **env,
            source_topic="errorflow.task-events",
            partition=0,
            offset=7,
            reason="record is not valid JSON",
            raw_base64="Z2FyYmFnZQ==",
        ),
    ]
