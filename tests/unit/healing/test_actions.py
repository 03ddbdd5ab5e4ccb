"""Runner-side healing actions touch only configured directories, never via symlinks."""

from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path

from healing.actions import archive_old_files, clear_caches


def _old(path: Path, days: float) -> None:
    stamp = time.time() - days * 86_400
    os.utime(path, (stamp, stamp))


def test_archive_moves_only_old_files_inside_and_never_follows_a_symlink(tmp_path: Path) -> None:
    """Old files inside go into the archive; new ones stay; a symlink to a file or a
    directory outside is neither followed, archived nor touched."""
    data, outside, archive = tmp_path / "outputs", tmp_path / "secret", tmp_path / "archive"
    (data / "sub").mkdir(parents=True)
    outside.mkdir()
    old, new, deep = data / "old.png", data / "new.png", data / "sub" / "old2.png"
    for path in (old, new, deep):
        path.write_bytes(b"x" * 100)
    _old(old, 30)
    _old(deep, 30)
    precious = outside / "keys.txt"
    precious.write_text("do not move")
    _old(precious, 365)
    (data / "link-file").symlink_to(precious)
    (data / "link-dir").symlink_to(outside, target_is_directory=True)
    status, details = archive_old_files([data], archive, older_than_days=7)
    assert status == "done"
    assert details["archived"] == 2
    assert not old.exists() and not deep.exists()  # noqa: PT018
    assert new.exists()
    assert precious.read_text() == "do not move"
    assert (data / "link-file").is_symlink() and (data / "link-dir").is_symlink()  # noqa: PT018
    with tarfile.open(details["archive"]) as tar:
        assert sorted(tar.getnames()) == ["outputs/old.png", "outputs/sub/old2.png"]


def test_clear_caches_empties_configured_dirs_only(tmp_path: Path) -> None:
    """Files in the cache go; a symlink in it goes as a link, its target stays."""
    cache, keep = tmp_path / "cache", tmp_path / "keep"
    cache.mkdir()
    keep.mkdir()
    (cache / "a.bin").write_bytes(b"1" * 10)
    target = keep / "model.safetensors"
    target.write_text("weights")
    (cache / "model").symlink_to(target)
    status, details = clear_caches([cache])
    assert (status, details["removed"]) == ("done", 2)
    assert list(cache.iterdir()) == []
    assert target.read_text() == "weights"
    assert clear_caches([])[0] == "skipped"
