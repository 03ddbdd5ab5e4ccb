"""Fingerprints: the same bug gets the same id on every host and in every run.

A fingerprint hashes the exception's qualified type, its message with the variable
parts masked (quoted values, UUIDs, URLs, paths, hex, numbers) and the top in-app
frames as ``module:function`` (no line numbers, no absolute paths: those differ
between deployments of the same code).
"""

from __future__ import annotations

import hashlib
import re
import sysconfig
import traceback
from pathlib import Path

__all__ = ["fingerprint", "in_app_frames", "normalize_message"]

_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
        "<uuid>",
    ),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I), "<url>"),
    (re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.@%+~-]+){2,}[\\/]?"), "<path>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"\b[\w-]*\d[\w-]*\b"), "<n>"),
)
_SPACES = re.compile(r"\s+")
_STDLIB_ROOTS = tuple({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})
_SDK_ROOT = str(Path(__file__).parent)


def normalize_message(message: str) -> str:
    """``message`` with ids, numbers, paths and quoted values replaced by placeholders."""
    for pattern, mask in _MASKS:
        message = pattern.sub(mask, message)
    return _SPACES.sub(" ", message).strip()[:500]


def _in_app(filename: str) -> bool:
    if filename.startswith("<") or filename.startswith(_SDK_ROOT):
        return False
    if "site-packages" in filename or "dist-packages" in filename:
        return False
    return not filename.startswith(_STDLIB_ROOTS)


def in_app_frames(exc: BaseException, limit: int = 3) -> list[str]:
    """The innermost ``limit`` frames of application code, as ``module:function``."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _in_app(f.filename)]
    return [f"{Path(f.filename).stem}:{f.name}" for f in frames[-limit:]]


def fingerprint(exc: BaseException, error_type: str | None = None) -> str:
    """A stable 16-hex-digit id for the bug behind ``exc``."""
    kind = error_type or f"{type(exc).__module__}.{type(exc).__qualname__}"
    parts = [kind, normalize_message(str(exc)), *in_app_frames(exc)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
