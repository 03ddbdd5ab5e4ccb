"""``/api/v1/errors/ws``: errors, anomalies, alerts, breaker transitions and healing
actions as they happen (:class:`api.feed.LiveFeed`), filtered per client."""

from __future__ import annotations

import asyncio
import contextlib
import hmac

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from api.context import ApiContext
from api.feed import Client

__all__ = ["router"]


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter()

    @api.websocket("/api/v1/errors/ws")
    async def live(
        socket: WebSocket,
        service: str | None = None,
        template_id: str | None = None,
        type: str | None = None,  # noqa: A002 - the query parameter's documented name
        token: str | None = None,
    ) -> None:
        """``?type=error,alert&service=comfyui&template_id=...``; a ``ping`` every 15 s
        says how many items this client lost to its bounded queue. With protected reads
        the token comes as ``?token=`` or a bearer header (browsers cannot set one)."""
        settings = ctx.settings
        if settings.protect_reads:
            given = token or socket.headers.get("authorization", "").partition(" ")[2]
            expected = settings.token.get_secret_value() if settings.token else None
            if expected is None or not hmac.compare_digest(given.encode(), expected.encode()):
                await socket.close(code=1008, reason="token required")
                return
        await socket.accept()
        kinds = frozenset(t for t in (type or "").split(",") if t)
        client = Client(service=service, template_id=template_id, types=kinds)
        await ctx.feed.join(client)
        await socket.send_json(
            {
                "type": "ready",
                "filters": {"service": service, "template_id": template_id, "types": sorted(kinds)},
            }
        )
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client.ready.wait(), 15)
                client.ready.clear()
                if not client.queue:
                    await socket.send_json({"type": "ping", "dropped": client.dropped})
                while client.queue:
                    await socket.send_json(client.queue.popleft())
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            ctx.feed.leave(client)

    return api
