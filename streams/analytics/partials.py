"""Partial aggregates: what the ingest stage sends to the detection stage (pure).

The ingest stage reads task and call events (keyed by task or service), so the counts
of one key are spread over partitions. It sums each micro-batch per (key, time bucket)
and sends those partial counts keyed by key: every key then lives on one partition of
the partials topic, and one detection engine owns it — two workers give the same
results as one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from streams.analytics.windows import WindowCounts
from streams.facts import Facts, contributions

__all__ = [
    "MARK_EVERY_MS",
    "MARK_FRESH_MS",
    "Mark",
    "aggregate",
    "decode_partial",
    "encode_mark",
    "encode_partial",
]


def aggregate(events: Iterable[Facts], step_ms: int) -> dict[tuple[str, int], WindowCounts]:
    """Counts per (key, bucket start) over a batch of events."""
    out: dict[tuple[str, int], WindowCounts] = {}
    for event in events:
        bucket = event.ts_ms - event.ts_ms % step_ms
        for key, counts in contributions(event):
            # A fresh sum per (key, bucket): storing ``counts`` itself would let the
            # next addition change what another key or a caller holds.
            out.setdefault((key, bucket), WindowCounts()).add(counts)
    return out


def encode_partial(key: str, bucket_ms: int, counts: WindowCounts) -> bytes:
    return json.dumps(
        {"key": key, "bucket_ms": bucket_ms, "counts": counts.to_dict()}, separators=(",", ":")
    ).encode()


# An idle input's reader repeats that it is idle this often; an engine believes it only
# while the latest word is fresh. During an outage no word arrives, so the input stops
# counting as idle within MARK_FRESH_MS — silence never closes a window. (An idle word
# kept for good once said let windows close during a broker outage while records
# appended just before it were still unread: 12 partials dropped as late.)
MARK_EVERY_MS = 500
MARK_FRESH_MS = 3 * MARK_EVERY_MS


@dataclass(frozen=True, slots=True)
class Mark:
    """What an input's reader says besides how far it read (see :func:`encode_mark`)."""

    idle_since_ms: int | None
    said_ms: int | None


def encode_mark(
    source: str, ts_ms: int, idle_since_ms: int | None = None, *, said_ms: int | None = None
) -> bytes:
    """How far one input partition has been read, in event time (sent to every
    partition of the partials topic, so every engine knows every input's progress).
    ``idle_since_ms``: the ingest stage has read the partition to its end and seen
    nothing new since then (wall clock) — only the reader can tell an input that is
    quiet from one whose records are stuck upstream (a broker outage). ``said_ms``: when
    the reader said so (wall clock), for the engine's freshness check."""
    data: dict[str, object] = {"mark": source, "ts_ms": ts_ms}
    if idle_since_ms is not None:
        data["idle_since_ms"] = idle_since_ms
    if said_ms is not None:
        data["said_ms"] = said_ms
    return json.dumps(data, separators=(",", ":")).encode()


def decode_partial(raw: bytes) -> tuple[str, int, WindowCounts] | tuple[str, int, Mark]:
    """(key, bucket, counts) for a partial, (source, ts, mark) for a mark."""
    data = json.loads(raw)
    if "mark" in data:
        idle, said = data.get("idle_since_ms"), data.get("said_ms")
        mark = Mark(None if idle is None else int(idle), None if said is None else int(said))
        return data["mark"], int(data["ts_ms"]), mark
    return data["key"], int(data["bucket_ms"]), WindowCounts.from_dict(data["counts"])
