"""Mutations: breaker reset and config, alert thresholds, diagnose, dead-letter replay.

Each needs the token and JSON (:mod:`api.security`); each only produces events to Kafka
(or reads), so the stream workers apply them — the API changes no state of its own.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException

import schemas as s
from api.context import ApiContext
from api.models import (
    DEFAULT_THRESHOLDS,
    BreakerSettings,
    ReplayRequest,
    ServiceName,
    Thresholds,
    ThresholdsPatch,
)
from api.reads import current_thresholds
from sinks import queries

__all__ = ["router"]


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(dependencies=ctx.mutate)

    async def accepted(event: s.Envelope, **echo: Any) -> dict[str, Any]:
        await ctx.publish(event)
        return {"accepted": True, "event_id": event.event_id, **echo}

    @api.post("/api/v1/errors/circuit-breakers/{service}/reset", status_code=202)
    async def reset_breaker(service: ServiceName) -> dict[str, Any]:
        if not await ctx.query(queries.service_known, service):
            raise HTTPException(404, f"no breaker state or call events for service {service!r}")
        return await accepted(s.ResetBreaker(service=service, source=ctx.source))

    @api.put("/api/v1/errors/circuit-breakers/{service}/config", status_code=202)
    async def configure_breaker(service: ServiceName, body: BreakerSettings) -> dict[str, Any]:
        values = body.model_dump()
        event = s.ConfigureBreaker(service=service, source=ctx.source, **values)
        return await accepted(event, **values)

    @api.put("/api/v1/errors/alerts/thresholds", status_code=202)
    async def replace_thresholds(body: Thresholds) -> dict[str, Any]:
        """All three thresholds at once (a missing one is an error, never a reset)."""
        values = body.model_dump()
        return await accepted(s.SetAlertThresholds(source=ctx.source, **values), **values)

    @api.patch("/api/v1/errors/alerts/thresholds", status_code=202)
    async def update_thresholds(body: ThresholdsPatch) -> dict[str, Any]:
        """Some thresholds; the others keep their current values."""
        change = body.model_dump(exclude_none=True)
        if not change:
            raise HTTPException(422, "give at least one of " + ", ".join(DEFAULT_THRESHOLDS))
        values = {**await current_thresholds(ctx), **change}
        return await accepted(s.SetAlertThresholds(source=ctx.source, **values), **values)

    @api.post("/api/v1/errors/self-healing/diagnose")
    async def diagnose() -> dict[str, Any]:
        """Every detector over the last hour of heartbeats; findings and what the safety
        policy would do, acting on nothing."""
        from healing import beats_by_worker, diagnose_fleet

        rows = await ctx.query(queries.recent_heartbeats)
        return diagnose_fleet(beats_by_worker(rows), int(time.time() * 1000))

    @api.post("/api/v1/errors/dead-letters/replay")
    async def replay_dead_letters(body: ReplayRequest) -> dict[str, Any]:
        """Replay dead letters as `errorflow dlq replay` does: the newest letter per task
        that matches, held back while its service's fleet breaker is open (unless
        ``force``), paced at ``rate_per_s``; ``dry_run`` only says what it would do."""
        from streams.recovery.dead_letters import Selection, plan_for, replay

        selection = Selection(
            task_ids=frozenset(body.task_ids),
            fingerprint=body.fingerprint,
            since=body.since,
            until=body.until,
        )
        if not (selection.narrows or body.all):
            raise HTTPException(
                422, "say what to replay: task_ids, fingerprint, since/until, or all"
            )
        bootstrap = ctx.bootstrap_servers
        letters, plan = await plan_for(bootstrap, selection, force=body.force)
        held = [{"task_id": letter.task_id, "open_service": svc} for letter, svc in plan.refused]
        if body.dry_run:
            return {
                "matched": len(letters),
                "would_replay": [letter.task_id for letter in plan.replay],
                "held_back": held,
                "dry_run": True,
            }
        sent = await replay(bootstrap, plan.replay, who=body.by, rate_per_s=body.rate_per_s)
        return {
            "matched": len(letters),
            "replayed": [{"task_id": c.task_id, "command_id": c.command_id} for c in sent],
            "held_back": held,
        }

    return api
