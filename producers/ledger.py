"""A persisted set of handled command ids, so a restart never repeats a command."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CommandLedger"]


class CommandLedger:
    """Append-only file of command ids; ``add`` fsyncs before returning."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._seen: set[str] = set()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                self._seen = {
                    line.strip() for line in path.read_text().splitlines() if line.strip()
                }

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._seen

    def add(self, command_id: str) -> None:
        if command_id in self._seen:
            return
        self._seen.add(command_id)
        if self.path is not None:
            with self.path.open("a") as fh:
                fh.write(command_id + "\n")
                fh.flush()
                os.fsync(fh.fileno())
