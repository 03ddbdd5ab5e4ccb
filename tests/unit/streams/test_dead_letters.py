"""Choosing dead letters to replay: selectors, open breakers, the replay command."""

from __future__ import annotations

from datetime import timedelta

import schemas as s
from streams.recovery.dead_letters import Selection, plan_replay, replay_command
from tests.samples import SOURCE, T0, error


def _letter(task_id: str, *, fingerprint: str = "3f2a9c", minutes: int = 0) -> s.TaskDeadLettered:
    failure = error("permanent").model_copy(update={"fingerprint": fingerprint})
    return s.TaskDeadLettered(
        source=SOURCE,
        occurred_at=T0 + timedelta(minutes=minutes),
        task_id=task_id,
        template_id="sd",
        operation_type="image_generation",
        attempts=1,
        errors=[failure],
        task_data={"prompt": task_id},
    )


def test_selection_by_task_fingerprint_and_time() -> None:
    a, b, c = _letter("a"), _letter("b", fingerprint="ff"), _letter("c", minutes=10)
    assert [x.task_id for x in (a, b, c) if Selection(frozenset({"b"})).matches(x)] == ["b"]
    assert [x.task_id for x in (a, b, c) if Selection(fingerprint="ff").matches(x)] == ["b"]
    late = Selection(since=T0 + timedelta(minutes=5))
    assert [x.task_id for x in (a, b, c) if late.matches(x)] == ["c"]
    early = Selection(until=T0 + timedelta(minutes=5))
    assert [x.task_id for x in (a, b, c) if early.matches(x)] == ["a", "b"]


def test_an_open_breaker_holds_a_letter_back_unless_forced() -> None:
    """The sample error is from service comfyui: open → held back; --force → replayed."""
    letters = [_letter("a")]
    held = plan_replay(letters, {"comfyui"}, force=False)
    assert (held.replay, [(x.task_id, svc) for x, svc in held.refused]) == ([], [("a", "comfyui")])
    forced = plan_replay(letters, {"comfyui"}, force=True)
    assert [x.task_id for x in forced.replay] == ["a"]
    assert plan_replay(letters, {"other"}, force=False).refused == []


def test_replay_is_a_fresh_attempt_series_with_a_new_id_per_run() -> None:
    letter = _letter("a")
    first = replay_command(letter, "run-1", "alice", SOURCE)
    again = replay_command(letter, "run-1", "alice", SOURCE)
    other = replay_command(letter, "run-2", "alice", SOURCE)
    assert (first.attempt, first.task_data, first.causation_id) == (
        1,
        {"prompt": "a"},
        letter.event_id,
    )
    assert first.command_id == again.command_id != other.command_id
    assert first.replay == {
        "run_id": "run-1",
        "by": "alice",
        "dead_letter_event_id": letter.event_id,
    }  # type: ignore[attr-defined]
