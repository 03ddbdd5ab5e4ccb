"""The HTTP API (FastAPI) over ClickHouse history and the control topic."""

from api.app import create_app

__all__ = ["create_app"]
