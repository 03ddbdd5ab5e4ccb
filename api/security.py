"""Who may steer the fleet: bearer tokens, JSON-only mutations, optional read protection.

Every mutation (breaker reset and config, alert thresholds, diagnose, DLQ replay, SQL)
needs ``Authorization: Bearer <ERRORFLOW_API_TOKEN>``, compared in constant time. With
no token configured, mutations are refused with a message saying how to set one (an
open fleet switch is never the default). Mutations take only ``application/json``: a
browser form on another site cannot send that without a CORS preflight, which is off
unless ``ERRORFLOW_API_CORS_ORIGINS`` lists origins. The token never appears in a log
line or an error body.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ApiSettings", "Guard"]


class ApiSettings(BaseSettings):
    """``ERRORFLOW_API_*``, read once at process entry."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix="ERRORFLOW_API_")

    token: SecretStr | None = None
    protect_reads: bool = False
    cors_origins: list[str] = Field(default_factory=list)
    host: str = "127.0.0.1"


_NO_TOKEN = (
    "mutations are disabled: no API token is configured. Set ERRORFLOW_API_TOKEN for "  # noqa: S105
    "`errorflow serve` and send it as 'Authorization: Bearer <token>'"
)


class Guard:
    """FastAPI dependencies checking a request against :class:`ApiSettings`."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings

    def _check_token(self, request: Request) -> None:
        token = self.settings.token
        if token is None:
            raise HTTPException(403, _NO_TOKEN)
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise HTTPException(
                401,
                "missing or wrong API token: send 'Authorization: Bearer <ERRORFLOW_API_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def mutation(self, request: Request) -> None:
        """A request that changes something: the token, then a JSON body (or none)."""
        self._check_token(request)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind and kind != "application/json":
            raise HTTPException(415, f"mutations take application/json, not {kind}")
        if not kind and await request.body():
            raise HTTPException(415, "mutations take application/json")

    async def read(self, request: Request) -> None:
        """A read: the token only when ERRORFLOW_API_PROTECT_READS is set."""
        if self.settings.protect_reads:
            self._check_token(request)
