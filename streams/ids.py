"""Deterministic ids of the worker's outputs: derived from their cause, so reprocessing an
input after a crash yields the same id and consumers drop the duplicate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

__all__ = ["NAMESPACE", "utc"]

NAMESPACE = uuid.UUID("0e3c7b1e-3f4e-4a4b-9d57-6a8f5c2d1b90")


def utc(ms: int) -> datetime:
    """An aware UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC)
