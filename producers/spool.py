"""An append-only disk spool: where events wait while Kafka cannot take them.

The spool is a directory of segment files named by the sequence number of their first
record, so reading segments in name order replays records in publish order — even
when an older in-flight batch that failed is spooled after newer overflow. A segment
is deleted only once every record in it was delivered; a crash mid-segment re-sends
that segment, and consumers drop the duplicates by ``event_id``.

One process owns a spool directory (an exclusive ``flock``); a second process asking
for the same directory gets a clear :class:`SpoolLocked`.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["Spool", "SpoolLocked", "SpooledRecord"]

_SEGMENT_RECORDS = 1000


class SpoolLocked(RuntimeError):
    """Another live process owns this spool directory."""


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    seq: int
    topic: str
    key: bytes
    value: bytes
    type: str


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock: IO[bytes] | None = (directory / ".lock").open("ab")
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise SpoolLocked(f"spool {directory} is in use by another process") from None
        self._writer: IO[str] | None = None
        self._writer_path: Path | None = None
        self._writer_count = 0

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob("*.seg"))

    def last_seq(self) -> int:
        """The highest sequence number on disk (-1 when empty), so a restarted process
        numbers its records after what an earlier one left behind."""
        last = -1
        for segment in self.segments():
            for record in self._read(segment):
                last = max(last, record.seq)
        return last

    def __len__(self) -> int:
        return sum(1 for s in self.segments() for _ in self._read(s))

    def is_empty(self) -> bool:
        return not self.segments()

    def append(self, records: list[SpooledRecord], *, own_segment: bool = False) -> None:
        """Append records (already in order). ``own_segment`` writes them into a segment
        named by their first seq, for an older batch that must sort before newer ones."""
        if not records:
            return
        if own_segment:
            self._close_writer()
            path = self.directory / f"{records[0].seq:020d}.seg"
            if path.exists():  # never clobber: nudge the name, order is kept by seq inside
                path = self.directory / f"{records[0].seq:020d}-{os.getpid()}.seg"
            with path.open("a") as fh:
                fh.writelines(self._line(r) for r in records)
                fh.flush()
                os.fsync(fh.fileno())
            return
        for record in records:
            writer = self._ensure_writer(record.seq)
            writer.write(self._line(record))
            self._writer_count += 1
        assert self._writer is not None
        self._writer.flush()
        os.fsync(self._writer.fileno())

    def adopt(self, other: Spool) -> int:
        """Move the segments of ``other`` (a dead process's spool, locked by us) into
        this one, to be delivered from here; returns how many. Names keep their seq
        order, suffixed so nothing is clobbered."""
        self._close_writer()
        moved = 0
        for segment in other.segments():
            target = self.directory / f"{segment.stem}-from-{other.directory.name}.seg"
            segment.rename(target)
            moved += 1
        return moved

    def oldest(self) -> tuple[Path, list[SpooledRecord]] | None:
        """The oldest segment and its records (the writer's segment is closed first)."""
        segments = self.segments()
        if not segments:
            return None
        if self._writer_path == segments[0]:
            self._close_writer()
        return segments[0], list(self._read(segments[0]))

    def delete(self, segment: Path) -> None:
        if segment == self._writer_path:
            self._close_writer()
        segment.unlink(missing_ok=True)

    def close(self) -> None:
        self._close_writer()
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    @staticmethod
    def _line(record: SpooledRecord) -> str:
        return (
            json.dumps(
                {
                    "seq": record.seq,
                    "topic": record.topic,
                    "key": base64.b64encode(record.key).decode(),
                    "type": record.type,
                    "value": record.value.decode(),
                }
            )
            + "\n"
        )

    @staticmethod
    def _read(segment: Path) -> Iterator[SpooledRecord]:
        try:
            lines = segment.read_text().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                data = json.loads(line)
            except ValueError:
                continue  # a torn last line from a crash mid-write: that record was never acked
            yield SpooledRecord(
                data["seq"],
                data["topic"],
                base64.b64decode(data["key"]),
                data["value"].encode(),
                data["type"],
            )

    def _ensure_writer(self, seq: int) -> IO[str]:
        if self._writer is None or self._writer_count >= _SEGMENT_RECORDS:
            self._close_writer()
            self._writer_path = self.directory / f"{seq:020d}.seg"
            self._writer = self._writer_path.open("a")
            self._writer_count = 0
        return self._writer

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self._writer_path = None
        self._writer_count = 0
