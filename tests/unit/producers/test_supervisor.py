"""The supervisor's command: placeholders per argument, no shell, only id-like values;
the hook or the command runs once per restart and answers for the lost worker."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import schemas as s
from producers.supervisor import SupervisorListener, supervisor_argv
from producers.testing import InMemoryPublisher, create_test_handler


def _restart(worker: str = "vm:4242", **params: object) -> s.RunHealingAction:
    return s.RunHealingAction(
        command_id=s.command_id(f"restart-{worker}"),
        causation_id="test",
        worker_id=worker,
        action="restart_worker",
        params={"via": s.SUPERVISOR, "host": "vm", "runner_id": "gpu-1", **params},
        reason="unresponsive_worker",
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
        source=s.Source(runner_id="streams", worker_id="w", host="h", pid=1, sdk_version="0"),
    )


def test_placeholders_fill_arguments_and_nothing_from_the_wire_adds_one() -> None:
    argv = supervisor_argv(
        "systemctl restart 'runner@{worker_id}' --host={host}",
        {"worker_id": "vm:4242", "host": "vm"},
    )
    assert argv == ["systemctl", "restart", "runner@vm:4242", "--host=vm"]
    for bad in ("vm 1", "a;rm -rf /", "$(id)", "", "x" * 300):
        with pytest.raises(ValueError, match="not an id"):
            supervisor_argv("restart {worker_id}", {"worker_id": bad})


async def test_the_command_runs_once_and_answers_for_the_lost_worker(tmp_path: Path) -> None:
    out = tmp_path / "restarted"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.argv[1] + '\\n')"
    handler = create_test_handler(
        data_dir=tmp_path,
        healing_supervisor_cmd=f'{sys.executable} -c "{script}" {{worker_id}}',
    )
    listener = SupervisorListener(handler)
    command = _restart()
    await listener.handle(s.encode(command))
    await listener.handle(s.encode(command))  # delivered twice: run once
    assert out.read_text() == "vm:4242\n"
    publisher = handler.publisher
    assert isinstance(publisher, InMemoryPublisher)
    [result] = publisher.of_type("healing.result")
    assert isinstance(result, s.HealingResult)
    assert (result.worker_id, result.status, result.details["exit_code"]) == ("vm:4242", "done", 0)  # type: ignore[index]


async def test_only_supervisor_restarts_of_other_workers_are_taken(tmp_path: Path) -> None:
    """A restart of its own worker id, one the worker runs itself (no ``via``) and a
    dry run: none runs the hook."""
    handler = create_test_handler(data_dir=tmp_path)
    called: list[dict[str, object]] = []
    handler.supervisor_hook = called.append
    listener = SupervisorListener(handler)
    me = handler.source.worker_id
    await listener.handle(s.encode(_restart(me)))
    own = _restart("vm:1").model_copy(update={"params": {}})
    await listener.handle(s.encode(own))
    await listener.handle(s.encode(_restart("vm:2", dry_run=True)))
    assert called == []
    await listener.handle(s.encode(_restart("vm:3")))
    assert [c["worker_id"] for c in called] == ["vm:3"]
