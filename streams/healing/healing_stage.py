"""Stage: heartbeats → diagnoses → safe healing actions, and their verification.

Consumes ``errorflow.heartbeats`` (keyed by worker id, so one partition holds a
worker's beats and the ``healing.result`` answers to its actions). Every tick runs the
detectors of :mod:`healing` over each worker's recent beats, lets
:class:`healing.HealingPolicy` decide across the whole stage (the fleet budget counts
every worker this stage sees), and emits ``healing.action`` to the worker, with
``expires_at``. An action is verified: if its problem is diagnosed again after
``healing_verify_s``, it failed; if not, it worked; repeated failures stop the remedy
and raise an alert, as does a tripped fleet budget. Dry-run publishes the actions with
``params.dry_run`` (runners report them skipped) and acts on nothing.

Limits, said plainly: the policy's cooldowns live in this process (a restarted stream
worker starts them afresh; runners still drop expired actions); an unresponsive worker
gets an alert, not a supervisor restart, and its in-flight tasks are not yet handed to
recovery.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from healing import Beat, DetectorConfig, Diagnosis, HealingPolicy, PolicyConfig, diagnose
from schemas import (
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


@dataclass(slots=True)
class Watch:
    """One heartbeats partition: its workers' recent beats and actions being verified."""

    beats: dict[str, deque[Beat]] = field(default_factory=dict)
    verifying: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    results: list[HealingResult] = field(default_factory=list)


class HealingStage(EngineStage[Watch]):
    def __init__(self, settings: WorkerSettings, source: Source) -> None:
        super().__init__(
            settings.engine(), name="healing", topics=[HEARTBEATS.name], start_from="latest"
        )
        self.settings = settings
        self.source = source
        self.detectors = DetectorConfig()
        self.policy = HealingPolicy(
            PolicyConfig(
                cooldown_s=settings.healing_cooldown_s,
                fleet_fraction=settings.healing_fleet_fraction,
                dry_run=settings.healing_dry_run,
                ttl_s=settings.healing_ttl_s,
            )
        )
        self.alerted: set[str] = set()

    def new_engine(self, tp: TopicPartition) -> Watch:
        return Watch()

    def feed(self, engine: Watch, record: Record) -> None:
        try:
            event = decode(record.value or b"")
        except DecodeError:
            self.undecodable += 1  # the sink keeps heartbeats' poison with its reason
            return
        if isinstance(event, WorkerHeartbeat):
            bad = tuple(m.name for m in event.models or [] if not m.checksum_ok)
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
            )
            engine.beats.setdefault(event.worker_id, deque(maxlen=_HISTORY)).append(beat)
        elif isinstance(event, HealingResult):
            engine.results.append(event)

    def collect(self, engine: Watch, now_ms: int) -> list[Output]:
        return []  # collect_all decides across every partition (the fleet budget)

    def collect_all(self, now_ms: int) -> list[Output]:
        found: list[tuple[Watch, Diagnosis]] = []
        workers = 0
        for watch in self.engines.values():
            for result in watch.results:
                if result.status == "failed":
                    self.policy.outcome(result.worker_id, result.action, ok=False)
            watch.results.clear()
            for worker, beats in watch.beats.items():
                workers += 1
                found += [(watch, d) for d in diagnose(worker, list(beats), now_ms, self.detectors)]
            self._verify(watch, {(d.worker_id, d.action) for w, d in found if w is watch}, now_ms)
        out: list[Output] = []
        decisions = self.policy.decide([d for _, d in found], fleet_size=workers, now_ms=now_ms)
        for (watch, diagnosis), decision in zip(found, decisions, strict=True):
            if decision.verdict in ("act", "dry_run"):
                out.append(output_of(self._action(diagnosis, decision.expires_at_ms, now_ms)))
                if decision.acts:
                    watch.verifying[(diagnosis.worker_id, diagnosis.action)] = {
                        "problem": diagnosis.problem,
                        "verify_at_ms": now_ms + int(self.settings.healing_verify_s * 1000),
                    }
            elif decision.verdict in ("budget", "gave_up"):
                out += self._alert(diagnosis, decision.verdict, decision.why, now_ms)
        return out

    def _verify(self, watch: Watch, still: set[tuple[str, str]], now_ms: int) -> None:
        """Actions past their verification time: did the symptom clear?"""
        for key, pending in list(watch.verifying.items()):
            if now_ms < pending["verify_at_ms"]:
                continue
            del watch.verifying[key]
            self.policy.outcome(key[0], key[1], ok=key not in still)

    def _action(self, d: Diagnosis, expires_at_ms: int, now_ms: int) -> RunHealingAction:
        cause = f"healing|{d.worker_id}|{d.action}|{now_ms // 1000}"
        params = {**d.params, **({"dry_run": True} if self.policy.config.dry_run else {})}
        if d.action == "throttle_processing":
            params["duration_s"] = self.settings.healing_throttle_s
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

    def _alert(self, d: Diagnosis, verdict: str, why: str, now_ms: int) -> list[Output]:
        alert_id = f"healing:{verdict}:{d.action}" + (
            f":{d.worker_id}" if verdict == "gave_up" else ""
        )
        if alert_id in self.alerted:
            return []  # one alert per episode
        self.alerted.add(alert_id)
        name = "healing_budget" if verdict == "budget" else "healing_gave_up"
        return [
            output_of(
                AlertFiring(
                    event_id=str(uuid.uuid5(NAMESPACE, f"{alert_id}|{now_ms // 60_000}")),
                    occurred_at=utc(now_ms),
                    source=self.source,
                    alert_id=alert_id,
                    name=name,
                    severity="high",
                    labels={"action": d.action, "worker_id": d.worker_id},
                    value=1.0,
                    threshold=self.policy.config.fleet_fraction,
                    summary=f"self-healing held back: {why}",
                )
            )
        ]
