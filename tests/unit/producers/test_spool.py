"""The disk spool keeps publish order, survives reopening, and has one owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.spool import Spool, SpooledRecord, SpoolLocked


def _r(seq: int) -> SpooledRecord:
    return SpooledRecord(seq, "errorflow.task-events", b"k", b'{"n": %d}' % seq, "task.started")


def test_an_older_failed_batch_sorts_before_newer_overflow(tmp_path: Path) -> None:
    """Overflow 11-12 spooled first, then the failed in-flight batch 1-10: replay is 1..12."""
    spool = Spool(tmp_path)
    spool.append([_r(11), _r(12)])
    spool.append([_r(i) for i in range(1, 11)], own_segment=True)
    order = []
    while (oldest := spool.oldest()) is not None:
        segment, records = oldest
        order += [r.seq for r in records]
        spool.delete(segment)
    assert order == list(range(1, 13))


def test_spool_survives_reopen_and_reports_last_seq(tmp_path: Path) -> None:
    """A new process sees the old records and numbers its own after them."""
    spool = Spool(tmp_path)
    spool.append([_r(5), _r(6)])
    spool.close()
    reopened = Spool(tmp_path)
    assert reopened.last_seq() == 6
    assert len(reopened) == 2


def test_a_second_owner_is_refused(tmp_path: Path) -> None:
    """Two spools on one directory would interleave; the second is refused clearly."""
    first = Spool(tmp_path)
    with pytest.raises(SpoolLocked, match="in use"):
        Spool(tmp_path)
    first.close()
    Spool(tmp_path).close()  # released: usable again


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    """A crash mid-write leaves a partial line; reading skips it instead of failing."""
    spool = Spool(tmp_path)
    spool.append([_r(1)])
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    segment.write_text(segment.read_text() + '{"seq": 2, "top')
    assert [r.seq for r in Spool(tmp_path).oldest()[1]] == [1]  # type: ignore[index]
