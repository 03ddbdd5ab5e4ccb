"""Stage: heartbeats → diagnoses → safe healing actions, and their verification.

Consumes ``errorflow.heartbeats`` (keyed by worker id, so one partition holds a
worker's beats and the ``healing.result`` answers to its actions). Every tick runs the
detectors of :mod:`healing` over each worker's recent beats, lets each partition's
:class:`healing.HealingPolicy` decide with the fleet budget counted across every
worker this stage sees, and emits ``healing.action`` to the worker, with
``expires_at``. A worker that stopped heartbeating cannot act: its restart goes to the
supervisor (``params.via = "supervisor"``, run by a supervisor hook in another
process), and the recovery stage retries the tasks it had in flight.

Every action is verified after ``healing_verify_s``: its problem gone (for a restart
through the supervisor: the worker, or a new process of the same runner on the same
host, beats again) is a success, else a failure — both published as a
``healing.result`` with ``details.kind = "verification"``. A failed verification raises
an alert (once per episode: "the worker stays down"), repeated failures stop the remedy
(``gave_up``), and a tripped fleet budget alerts instead of acting. A diagnosis held
back by a cooldown, the rate limit, the budget or a give-up is published once per
episode as ``healing.result`` ``skipped`` with ``details.kind = "suppressed"``, so
``GET /self-healing/stats`` counts what happened from ClickHouse. Dry-run publishes
the actions with ``params.dry_run`` (runners report them skipped) and acts on nothing.

The policy's cooldowns, failure counts, pending verifications and alerts are the
partition's state (changelog), so a restarted stream worker keeps them; recent beats
are not (the detectors need fresh beats after a restart). Workers whose last beat said
``stopping`` are never diagnosed unresponsive, and workers silent for
``healing_forget_s`` are forgotten.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from healing import Beat, DetectorConfig, Diagnosis, HealingPolicy, PolicyConfig, diagnose
from healing.policy import Decision
from schemas import (
    SUPERVISOR,
    AlertFiring,
    DecodeError,
    HealingResult,
    RunHealingAction,
    Source,
    WorkerHeartbeat,
    decode,
)
from schemas.topics import HEARTBEATS
from streams.engine import EngineStage, Output
from streams.engine.stage import Record
from streams.facts import epoch_ms
from streams.ids import NAMESPACE, utc
from streams.outputs import output_of
from streams.settings import WorkerSettings

__all__ = ["HealingStage", "Watch"]

_HISTORY = 90  # beats kept per worker (15 min at 10 s)
VERIFICATION, SUPPRESSED = "verification", "suppressed"  # details.kind of our own results


@dataclass(slots=True)
class Watch:
    """One heartbeats partition: its workers' recent beats, the policy for them, and the
    actions being verified."""

    policy: HealingPolicy
    beats: dict[str, deque[Beat]] = field(default_factory=dict)
    origin: dict[str, tuple[str, str]] = field(default_factory=dict)  # worker → (host, runner)
    verifying: dict[str, dict[str, Any]] = field(default_factory=dict)  # "worker|action" → …
    held: dict[str, str] = field(default_factory=dict)  # "worker|action" → verdict said
    alerted: set[str] = field(default_factory=set)
    results: list[HealingResult] = field(default_factory=list)
    changed: bool = False

    def state(self) -> dict[str, Any]:
        return {
            "policy": self.policy.snapshot(),
            "verifying": self.verifying,
            "held": self.held,
            "alerted": sorted(self.alerted),
        }

    def load(self, data: dict[str, Any]) -> None:
        self.policy.restore(data.get("policy", {}))
        self.verifying = dict(data.get("verifying", {}))
        self.held = dict(data.get("held", {}))
        self.alerted = set(data.get("alerted", []))


class HealingStage(EngineStage[Watch]):
    def __init__(self, settings: WorkerSettings, source: Source) -> None:
        super().__init__(
            settings.engine(), name="healing", topics=[HEARTBEATS.name], start_from="latest"
        )
        self.settings = settings
        self.source = source
        self.detectors = DetectorConfig()
        self.policy_config = PolicyConfig(
            cooldown_s=settings.healing_cooldown_s,
            fleet_fraction=settings.healing_fleet_fraction,
            dry_run=settings.healing_dry_run,
            ttl_s=settings.healing_ttl_s,
        )
        self.budget_alerted: set[str] = set()

    def new_engine(self, tp: TopicPartition) -> Watch:
        return Watch(HealingPolicy(self.policy_config))

    def feed(self, engine: Watch, record: Record) -> None:
        try:
            event = decode(record.value or b"")
        except DecodeError:
            self.undecodable += 1  # the sink keeps heartbeats' poison with its reason
            return
        if isinstance(event, WorkerHeartbeat):
            bad = tuple(m.name for m in event.models or [] if m.checksum_ok is False)
            loads = tuple((m.name, m.load_errors) for m in event.models or [] if m.load_errors)
            beat = Beat(
                epoch_ms(event.occurred_at),
                event.interval_s,
                event.cpu_percent,
                event.memory_rss_bytes,
                event.disk_free_bytes,
                event.disk_total_bytes,
                event.queue_depth,
                event.in_flight,
                bad,
                bool(event.stopping),
                loads,
                event.command_lag or 0,
            )
            engine.beats.setdefault(event.worker_id, deque(maxlen=_HISTORY)).append(beat)
            engine.origin[event.worker_id] = (event.source.host, event.source.runner_id)
        elif isinstance(event, HealingResult) and (event.details or {}).get("kind") not in (
            VERIFICATION,
            SUPPRESSED,
        ):
            engine.results.append(event)  # a runner's (or supervisor's) answer

    def collect(self, engine: Watch, now_ms: int) -> list[Output]:
        return []  # collect_all decides across every partition (the fleet budget)

    def changes(self, engine: Watch) -> dict[str, Any | None]:
        if not engine.changed:
            return {}
        engine.changed = False
        return {"watch": engine.state()}

    def load(self, engine: Watch, entries: dict[str, Any]) -> None:
        if "watch" in entries:
            engine.load(entries["watch"])

    def collect_all(self, now_ms: int) -> list[Output]:
        forget_ms = int(self.settings.healing_forget_s * 1000)
        found: dict[TopicPartition, list[Diagnosis]] = {}
        last_seen: dict[tuple[str, str], int] = {}  # (host, runner) → newest beat
        workers = 0
        for tp, watch in self.engines.items():
            for result in watch.results:
                if result.status == "failed":
                    watch.policy.outcome(result.worker_id, result.action, ok=False)
                    watch.changed = True
            watch.results.clear()
            for worker in [w for w, b in watch.beats.items() if now_ms - b[-1].at_ms > forget_ms]:
                del watch.beats[worker]  # silent for good: a new process has a new id
                watch.origin.pop(worker, None)
            found[tp] = []
            for worker, beats in watch.beats.items():
                workers += 1
                found[tp] += diagnose(worker, list(beats), now_ms, self.detectors)
                origin = watch.origin.get(worker)
                if origin is not None:
                    last_seen[origin] = max(last_seen.get(origin, 0), beats[-1].at_ms)
        needing = Counter(d.action for ds in found.values() for d in ds)
        out: list[Output] = []
        budget_held: set[str] = set()
        for tp, watch in self.engines.items():
            still = {_key(d.worker_id, d.action) for d in found[tp]}
            out += self._verify(watch, still, last_seen, now_ms)
            decisions = watch.policy.decide(
                found[tp], fleet_size=workers, now_ms=now_ms, needing=needing
            )
            for decision in decisions:
                out += self._act(watch, decision, now_ms)
                if decision.verdict == "budget":
                    budget_held.add(f"healing:budget:{decision.diagnosis.action}")
            for key in [k for k in watch.held if k not in still]:
                del watch.held[key]  # the episode is over: a new one is said again
                watch.changed = True
            if watch.changed:
                self._dirty.add(tp)
        self.budget_alerted &= budget_held  # a budget episode ends when no one is held
        return out

    def _act(self, watch: Watch, decision: Decision, now_ms: int) -> list[Output]:
        d = decision.diagnosis
        key = _key(d.worker_id, d.action)
        if decision.verdict in ("act", "dry_run"):
            watch.held.pop(key, None)
            action = self._action(d, decision.expires_at_ms, now_ms, watch.origin.get(d.worker_id))
            if decision.acts:
                watch.verifying[key] = {
                    "problem": d.problem,
                    "command_id": action.command_id,
                    "issued_ms": now_ms,
                    "verify_at_ms": now_ms + int(self.settings.healing_verify_s * 1000),
                    "via": action.params.get("via"),
                }
            watch.changed = True
            return [output_of(action)]
        out: list[Output] = []
        if watch.held.get(key) != decision.verdict:  # once per episode and verdict
            watch.held[key] = decision.verdict
            watch.changed = True
            out.append(self._own_result(d, SUPPRESSED, "skipped", now_ms, verdict=decision))
        if decision.verdict in ("budget", "gave_up"):
            out += self._alert(watch, d, decision.verdict, decision.why, now_ms)
        return out

    def _verify(
        self,
        watch: Watch,
        still: set[str],
        last_seen: dict[tuple[str, str], int],
        now_ms: int,
    ) -> list[Output]:
        """Actions past their verification time: did the symptom clear?"""
        out: list[Output] = []
        for key, pending in list(watch.verifying.items()):
            if now_ms < pending["verify_at_ms"]:
                continue
            del watch.verifying[key]
            watch.changed = True
            worker, _, action = key.rpartition("|")
            ok = key not in still
            if pending.get("via") == SUPERVISOR and not ok:
                # Restarted by the supervisor, the runner is usually a new process with
                # a new worker id: the same runner on the same host beating again counts.
                origin = watch.origin.get(worker)
                ok = origin is not None and last_seen.get(origin, 0) > pending["issued_ms"]
                if ok:
                    watch.beats.pop(worker, None)  # the old id will never beat again
            watch.policy.outcome(worker, action, ok=ok)
            diagnosis = Diagnosis(worker, pending["problem"], action)
            out.append(
                self._own_result(
                    diagnosis, VERIFICATION, "done" if ok else "failed", now_ms, pending=pending
                )
            )
            if not ok:
                out += self._alert(watch, diagnosis, "unverified", "the problem persists", now_ms)
            else:
                watch.alerted.discard(f"healing:unverified:{action}:{worker}")
        return out

    def _action(
        self,
        d: Diagnosis,
        expires_at_ms: int,
        now_ms: int,
        origin: tuple[str, str] | None = None,
    ) -> RunHealingAction:
        cause = f"healing|{d.worker_id}|{d.action}|{now_ms // 1000}"
        params: dict[str, Any] = {**d.params, "problem": d.problem}
        if self.policy_config.dry_run:
            params["dry_run"] = True
        if d.action == "throttle_processing":
            params["duration_s"] = self.settings.healing_throttle_s
        if d.problem == "unresponsive_worker":
            params["via"] = SUPERVISOR  # it cannot restart itself
            if origin is not None:  # where the supervisor finds it
                params["host"], params["runner_id"] = origin
        return RunHealingAction(
            event_id=str(uuid.uuid5(NAMESPACE, f"{cause}|event")),
            command_id=str(uuid.uuid5(NAMESPACE, cause)),
            causation_id=cause,
            occurred_at=utc(now_ms),
            source=self.source,
            worker_id=d.worker_id,
            action=d.action,
            params=params,
            reason=f"{d.problem}: {d.evidence}",
            expires_at=utc(expires_at_ms),
        )

    def _own_result(
        self,
        d: Diagnosis,
        kind: str,
        status: str,
        now_ms: int,
        *,
        verdict: Decision | None = None,
        pending: dict[str, Any] | None = None,
    ) -> Output:
        """A verification or a suppression, as a ``healing.result`` of this stage."""
        details: dict[str, Any] = {"kind": kind, "problem": d.problem}
        if verdict is not None:
            details |= {"verdict": verdict.verdict, "why": verdict.why}
            command = f"healing|{d.worker_id}|{d.action}|{verdict.verdict}|{now_ms // 1000}"
            command_id = str(uuid.uuid5(NAMESPACE, command))
        else:
            assert pending is not None
            command_id = pending["command_id"]
            details["verified"] = status == "done"
        return output_of(
            HealingResult(
                event_id=str(uuid.uuid5(NAMESPACE, f"{command_id}|{kind}")),
                occurred_at=utc(now_ms),
                source=self.source,
                command_id=command_id,
                worker_id=d.worker_id,
                action=d.action,
                status=status,
                details=details,
            )
        )

    def _alert(
        self, watch: Watch, d: Diagnosis, verdict: str, why: str, now_ms: int
    ) -> list[Output]:
        alert_id = f"healing:{verdict}:{d.action}" + (
            "" if verdict == "budget" else f":{d.worker_id}"
        )
        # One alert per episode: the budget's is fleet-wide (this stage's), the others
        # belong to the worker's partition.
        alerted = self.budget_alerted if verdict == "budget" else watch.alerted
        if alert_id in alerted:
            return []
        alerted.add(alert_id)
        watch.changed = True
        name = {
            "budget": "healing_budget",
            "gave_up": "healing_gave_up",
            "unverified": "worker_down" if d.problem == "unresponsive_worker" else "healing_failed",
        }[verdict]
        summary = (
            f"worker {d.worker_id} stays down after its restart through the supervisor"
            if name == "worker_down"
            else f"self-healing held back: {d.action} for {d.problem} on {d.worker_id}: {why}"
        )
        return [
            output_of(
                AlertFiring(
                    event_id=str(uuid.uuid5(NAMESPACE, f"{alert_id}|{now_ms // 60_000}")),
                    occurred_at=utc(now_ms),
                    source=self.source,
                    alert_id=alert_id,
                    name=name,
                    severity="high",
                    labels={"action": d.action, "worker_id": d.worker_id, "problem": d.problem},
                    value=1.0,
                    threshold=self.policy_config.fleet_fraction,
                    summary=summary,
                )
            )
        ]


def _key(worker: str, action: str) -> str:
    return f"{worker}|{action}"
