"""Healing actions as a runner executes them (``healing.action`` → ``healing.result``).

Each returns ``(status, details)`` with status ``done``/``failed``/``skipped``. Files are
touched only inside directories the runner configured (``ERRORFLOW_HEALING_CACHE_DIRS``,
``ERRORFLOW_HEALING_ARCHIVE_DIRS``): paths are resolved and checked to stay inside, and
symlinks are never followed — a link is removed or skipped as a link, its target is
never read, moved or deleted.
"""

from __future__ import annotations

import os
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["archive_old_files", "clear_caches", "inside"]

Result = tuple[str, dict[str, Any]]


def inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path`` (not following a final symlink) lies within one of ``roots``."""
    parent = path.parent.resolve()
    candidate = parent / path.name
    return any(candidate.is_relative_to(root.resolve()) for root in roots)


def _files(root: Path) -> Iterator[Path]:
    """Regular files under ``root``; symlinks (to files or directories) are yielded as
    links for the caller to skip, never descended into."""
    for here, dirs, files in os.walk(root, followlinks=False):
        base = Path(here)
        for name in files:
            yield base / name
        for name in list(dirs):
            if (base / name).is_symlink():
                dirs.remove(name)
                yield base / name


def clear_caches(dirs: Sequence[Path]) -> Result:
    """Empty the configured cache directories (the directories themselves stay)."""
    if not dirs:
        return "skipped", {"why": "no cache directories configured (ERRORFLOW_HEALING_CACHE_DIRS)"}
    removed, freed = 0, 0
    for root in dirs:
        if not root.is_dir():
            continue
        for path in _files(root):
            if not inside(path, [root]):
                continue
            if not path.is_symlink():
                freed += path.stat().st_size
            path.unlink()  # a symlink goes as a link; its target is untouched
            removed += 1
    return "done", {"removed": removed, "freed_bytes": freed, "dirs": [str(d) for d in dirs]}


def archive_old_files(
    dirs: Sequence[Path], archive_dir: Path, *, older_than_days: float, now: float | None = None
) -> Result:
    """Move regular files older than ``older_than_days`` from the configured directories
    into one compressed archive under ``archive_dir``; symlinks and anything resolving
    outside the directories are left alone."""
    if not dirs:
        return "skipped", {
            "why": "no archive directories configured (ERRORFLOW_HEALING_ARCHIVE_DIRS)"
        }
    now = time.time() if now is None else now
    cutoff = now - older_than_days * 86_400
    old = [
        (root, path)
        for root in dirs
        if root.is_dir()
        for path in _files(root)
        if not path.is_symlink()
        and inside(path, [root])
        and path.is_file()
        and path.stat().st_mtime < cutoff
    ]
    if not old:
        return "done", {"archived": 0}
    archive_dir.mkdir(parents=True, exist_ok=True)
    target = archive_dir / f"errorflow-archive-{int(now)}.tar.gz"
    moved = 0
    with tarfile.open(target, "w:gz") as tar:
        for root, path in old:
            tar.add(path, arcname=str(Path(root.name) / path.relative_to(root)), recursive=False)
            moved += 1
    for _, path in old:  # removed only once the archive is complete
        path.unlink()
    return "done", {"archived": moved, "archive": str(target)}
