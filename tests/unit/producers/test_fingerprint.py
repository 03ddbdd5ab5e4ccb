"""Fingerprints are stable across hosts and runs, and differ between bugs."""

from __future__ import annotations

import subprocess
import sys

from producers import fingerprint, normalize_message


def _raise(message: str) -> BaseException:
    try:
        raise ConnectionError(message)
    except ConnectionError as exc:
        return exc


def test_variable_parts_are_masked() -> None:
    """Numbers, ids, hex, paths and quoted values do not change the normalized text."""
    a = normalize_message(
        "job 3f2a9c1e-1111-2222-3333-444455556666 failed reading /data/in/77.png "
        "at 0x7ffe12 after 3021 ms: key 'abc'"
    )
    b = normalize_message(
        "job 9aaaaaaa-1111-2222-3333-444455556666 failed reading /tmp/x/y.png "
        "at 0x1 after 5 ms: key 'zzz'"
    )
    assert a == b
    assert "<uuid>" in a
    assert "<path>" in a


def test_same_bug_same_fingerprint_different_bug_different() -> None:
    """Two occurrences with different ids match; another message does not."""
    assert fingerprint(_raise("peer 10.0.0.1 reset after 12 ms")) == fingerprint(
        _raise("peer 10.0.0.9 reset after 900 ms")
    )
    assert fingerprint(_raise("peer reset")) != fingerprint(_raise("handshake refused"))


def test_fingerprint_is_stable_across_processes() -> None:
    """A fresh interpreter (other pid, other hash seed) computes the same fingerprint."""
    code = (
        "from producers import fingerprint\n"
        "def f():\n    raise ConnectionError('peer 10.0.0.1 reset after 12 ms')\n"
        "try:\n    f()\nexcept ConnectionError as e:\n    print(fingerprint(e))\n"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(runs) == 1
    assert len(runs.pop()) == 16
