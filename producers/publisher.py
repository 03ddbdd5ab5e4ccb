"""Publishing that never hurts the runner.

:meth:`KafkaPublisher.publish` is synchronous and O(1): it appends the event to a
bounded in-memory buffer and returns. A background sender encodes, batches and sends
with an idempotent aiokafka producer. When Kafka is unreachable (also at start-up) or
the buffer is full, records go to the disk :class:`~producers.spool.Spool` and are
delivered, in publish order, when Kafka answers again — by this process or, after a
crash, by the next one using the same spool directory. ``close()`` flushes.

What can be lost: events still in memory when the process is killed with SIGKILL
while Kafka is reachable (at most one linger interval plus one in-flight batch).
Everything spooled survives.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidMessageError, MessageSizeTooLargeError, RecordTooLargeError

from producers.limits import MAX_RECORD_BYTES, shrink
from producers.logs import sdk_logger
from producers.pending import PendingEvent, materialize
from producers.spool import Spool, SpooledRecord, SpoolLocked
from schemas import Envelope, encode, key_of, topic_of

__all__ = ["KafkaPublisher", "Publisher", "PublisherConfig", "PublisherStats", "dead_letter_path"]

log = sdk_logger("errorflow.publisher")
_REFUSED = (MessageSizeTooLargeError, RecordTooLargeError, InvalidMessageError)


def dead_letter_path(spool_dir: Path) -> Path:
    """The file beside a spool where records Kafka will never take are kept."""
    return spool_dir.with_name(f"{spool_dir.name}.dead-letter.jsonl")


class Publisher(Protocol):
    """Where the SDK sends events. ``publish`` must never block or raise; it takes a
    model or a :data:`~producers.pending.PendingEvent` to be materialized later."""

    def publish(self, event: Envelope | PendingEvent) -> None: ...

    async def start(self) -> None: ...

    async def close(self, timeout_s: float = 10.0) -> None: ...

    def stats(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class PublisherConfig:
    bootstrap_servers: str
    spool_dir: Path
    max_buffer: int = 10_000
    batch_size: int = 500
    send_timeout_s: float = 5.0
    reconnect_backoff_s: float = 1.0
    linger_ms: int = 5


@dataclass(slots=True)
class PublisherStats:
    published: int = 0
    sent: int = 0
    spooled: int = 0
    dropped: int = 0
    delivery_failures: int = 0
    truncated: int = 0  # sent with bulky fields replaced by a marker (producers.limits)
    dead_lettered: int = 0  # too big or refused by the broker: in the dead-letter file


class KafkaPublisher:
    def __init__(self, config: PublisherConfig) -> None:
        self.config = config
        self.counters = PublisherStats()
        # Events in publish order; sequence numbers are given when they leave the deque
        # (same order), so the hot path is one append.
        self._pending: deque[Envelope | PendingEvent] = deque()
        self._sleeping = False
        self._max_buffer = config.max_buffer
        self._wake = asyncio.Event()
        self._spool: Spool | None = None
        self._seq = 0
        self._producer: AIOKafkaProducer | None = None
        self._sender: asyncio.Task[None] | None = None
        self._closing = False
        self._in_flight = 0
        self.connected = False

    # -- the runner's side: never blocks, never raises ---------------------------------

    def publish(self, event: Envelope | PendingEvent) -> None:
        pending = self._pending
        pending.append(event)
        if len(pending) > self._max_buffer:
            self._spill_pending()
        if self._sleeping:  # wake the sender only when it waits (an Event costs ~0.3 µs)
            self._sleeping = False
            self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool and start the sender. Never fails because Kafka is down."""
        if self._sender is not None:
            return
        self._spool = _open_spool(self.config.spool_dir)
        if self._spool is not None:
            self._seq = max(self._seq, self._spool.last_seq() + 1)
        self._sender = asyncio.create_task(self._run(), name="errorflow-publisher")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is buffered (up to ``timeout_s``), spool the rest, stop."""
        if self._sender is None:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._sender), timeout_s)
        except TimeoutError:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        self._spill_pending()
        await self._disconnect()
        if self._spool is not None:
            self._spool.close()
        self._sender = None

    async def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything published so far was delivered; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            idle = not self._pending and self._in_flight == 0
            if idle and (self._spool is None or self._spool.is_empty()):
                return True
            self._wake.set()
            await asyncio.sleep(0.02)
        return False

    def stats(self) -> dict[str, Any]:
        spool = self._spool
        return {
            "published": self.counters.published + len(self._pending),
            "sent": self.counters.sent,
            "spooled": self.counters.spooled,
            "dropped": self.counters.dropped,
            "delivery_failures": self.counters.delivery_failures,
            "truncated": self.counters.truncated,
            "dead_lettered": self.counters.dead_lettered,
            "pending": len(self._pending),
            "spool_segments": len(spool.segments()) if spool else 0,
            "connected": self.connected,
        }

    # -- the sender --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                if await self._step():
                    return
            except Exception as exc:  # noqa: BLE001 - the sender must outlive any bug
                log.exception("errorflow.publisher.sender_error", extra={"error": repr(exc)})
                await self._pause(self.config.reconnect_backoff_s)

    async def _step(self) -> bool:
        """One round of the sender; True when it should stop (closing, nothing left)."""
        spool_empty = self._spool is None or self._spool.is_empty()
        if self._closing and not self._pending and spool_empty:
            return True
        if not self.connected and not await self._connect():
            if self._closing:
                return True  # close() spools what is left
            self._spill_pending()
            await self._pause(self.config.reconnect_backoff_s)
        elif not spool_empty:
            await self._drain_spool()
        elif self._pending:
            await self._send_pending_batch()
        elif self._closing:
            return True
        else:
            await self._pause(1.0)
        return False

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        self._sleeping = True
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)
        finally:
            self._sleeping = False

    async def _connect(self) -> bool:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.config.bootstrap_servers,
            enable_idempotence=True,
            acks="all",
            linger_ms=self.config.linger_ms,
            request_timeout_ms=int(self.config.send_timeout_s * 1000),
            retry_backoff_ms=200,
        )
        try:
            await asyncio.wait_for(producer.start(), self.config.send_timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure means "not now"; we retry
            log.debug("errorflow.publisher.connect_failed", extra={"error": repr(exc)})
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 1.0)
            return False
        self._producer = producer
        self.connected = True
        log.info("errorflow.publisher.connected")
        return True

    async def _disconnect(self) -> None:
        producer, self._producer = self._producer, None
        self.connected = False
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 2.0)

    async def _deliver(self, records: list[SpooledRecord]) -> bool:
        producer = self._producer
        if producer is None:
            return False

        async def send_all() -> list[BaseException | None]:
            futures = [
                await producer.send(
                    r.topic, r.value, key=r.key, headers=[("type", r.type.encode())]
                )
                for r in records
            ]
            return list(await asyncio.gather(*futures, return_exceptions=True))

        try:
            results = await asyncio.wait_for(send_all(), self.config.send_timeout_s)
            # A record the broker refuses for itself (too large, invalid) can never be
            # delivered: set it aside; any other failure means "not now" for the batch.
            failed = [r for r in results if isinstance(r, BaseException)]
            if any(not isinstance(r, _REFUSED) for r in failed):
                raise next(r for r in failed if not isinstance(r, _REFUSED))
        except Exception as exc:  # noqa: BLE001 - delivery failures switch to the spool
            self.counters.delivery_failures += 1
            log.warning("errorflow.publisher.delivery_failed error=%r", exc)
            await self._disconnect()
            return False
        for record, result in zip(records, results, strict=True):
            if isinstance(result, BaseException):
                self._dead_letter(record, f"refused by the broker: {type(result).__name__}")
        self.counters.sent += len(records) - len(failed)
        return True

    async def _send_pending_batch(self) -> None:
        batch = self._take(
            [
                self._pending.popleft()
                for _ in range(min(self.config.batch_size, len(self._pending)))
            ]
        )
        records = self._records(batch)
        self._in_flight = len(records)
        try:
            delivered = await self._deliver(records)
        finally:
            self._in_flight = 0
        if not delivered:
            # The failed batch is older than anything spooled meanwhile: its own segment,
            # named by its first seq, sorts before the newer overflow.
            self._write_spool(records, own_segment=True)
            self._spill_pending()

    async def _drain_spool(self) -> None:
        assert self._spool is not None
        oldest = self._spool.oldest()
        if oldest is None:
            return
        segment, records = oldest
        for start in range(0, len(records), self.config.batch_size):
            if not await self._deliver(records[start : start + self.config.batch_size]):
                return  # the segment stays; re-sent later (consumers dedupe by event_id)
        self._spool.delete(segment)

    def _spill_pending(self) -> None:
        if not self._pending:
            return
        batch = self._take(list(self._pending))
        self._pending.clear()
        self._write_spool(self._records(batch), own_segment=False)

    def _take(
        self, items: list[Envelope | PendingEvent]
    ) -> list[tuple[int, Envelope | PendingEvent]]:
        """Number events as they leave the buffer (publish order = sequence order)."""
        first = self._seq + 1
        self._seq += len(items)
        self.counters.published += len(items)
        return list(zip(range(first, first + len(items)), items, strict=True))

    def _records(self, batch: list[tuple[int, Envelope | PendingEvent]]) -> list[SpooledRecord]:
        records = []
        for seq, item in batch:
            try:
                event = materialize(item)
                value, truncated = shrink(event, encode(event))
                record = SpooledRecord(
                    seq, topic_of(event).name, key_of(event).encode(), value, event.type
                )
            except Exception as exc:  # noqa: BLE001 - one bad event must not stop the sender
                self.counters.dropped += 1
                log.error("errorflow.publisher.unencodable error=%r", exc)
                continue
            if truncated:
                self.counters.truncated += 1
                log.warning(
                    "errorflow.publisher.truncated type=%s key=%s bytes=%d",
                    record.type,
                    record.key.decode(errors="replace"),
                    len(value),
                )
            if len(value) > MAX_RECORD_BYTES:
                self._dead_letter(record, f"record of {len(value)} bytes over {MAX_RECORD_BYTES}")
                continue
            records.append(record)
        return records

    def _dead_letter(self, record: SpooledRecord, reason: str) -> None:
        """Set a record Kafka will never take aside, with why, so the rest flows."""
        self.counters.dead_lettered += 1
        path = dead_letter_path(self.config.spool_dir)
        line = {
            "reason": reason,
            "topic": record.topic,
            "key": record.key.decode(errors="replace"),
            "type": record.type,
            "value_base64": base64.b64encode(record.value).decode(),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as fh:
                fh.write(json.dumps(line) + "\n")
        except OSError as exc:
            self.counters.dropped += 1
            log.error("errorflow.publisher.dropped path=%s error=%r", path, exc)
            return
        log.error(
            "errorflow.publisher.dead_lettered type=%s key=%s path=%s reason=%s",
            record.type,
            line["key"],
            path,
            reason,
        )

    def _write_spool(self, records: list[SpooledRecord], *, own_segment: bool) -> None:
        if self._spool is None:
            self.counters.dropped += len(records)
            log.error(
                "errorflow.publisher.dropped", extra={"count": len(records), "why": "no spool"}
            )
            return
        try:
            self._spool.append(records, own_segment=own_segment)
        except OSError as exc:
            self.counters.dropped += len(records)
            log.error(
                "errorflow.publisher.dropped", extra={"count": len(records), "error": repr(exc)}
            )
            return
        self.counters.spooled += len(records)


def _open_spool(directory: Path) -> Spool | None:
    """This process's spool: ``directory``, or — when a live process of the same
    ``runner_id`` owns it — a private ``<directory>-<pid>``. Either way, spools left by
    dead processes of this runner (the shared one, or private ones) are adopted, so what
    they hold is delivered by this process instead of waiting for a pid to come back."""
    try:
        spool = Spool(directory)
    except SpoolLocked:
        private = directory.with_name(f"{directory.name}-{os.getpid()}")
        log.info(
            "errorflow.publisher.spool_shared spool=%s owner=alive using=%s",
            directory,
            private,
        )
        try:
            spool = Spool(private)
        except (OSError, SpoolLocked) as exc:
            log.error("errorflow.publisher.no_spool spool=%s error=%r", private, exc)
            return None
    except OSError as exc:
        log.error("errorflow.publisher.no_spool spool=%s error=%r", directory, exc)
        return None
    for orphan in [directory, *directory.parent.glob(f"{directory.name}-*")]:
        if orphan == spool.directory or not orphan.is_dir():
            continue
        try:
            left = Spool(orphan)
        except (SpoolLocked, OSError):
            continue  # a live process owns it (or it is not ours to read)
        try:
            moved = spool.adopt(left)
        finally:
            left.close()
        if moved:
            log.warning(
                "errorflow.publisher.spool_adopted from=%s into=%s segments=%d",
                orphan,
                spool.directory,
                moved,
            )
    return spool
