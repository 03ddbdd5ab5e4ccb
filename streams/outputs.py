"""Contract records as engine outputs: on their topic, keyed and typed as the contract says."""

from __future__ import annotations

from schemas import Envelope, encode, key_of
from schemas.topics import topic_of
from streams.engine import Output

__all__ = ["output_of"]


def output_of(event: Envelope) -> Output:
    """A contract record on its topic, keyed as the contract says, with its type header."""
    return Output(topic_of(event).name, key_of(event).encode(), encode(event), event.type.encode())
