"""Rules and the built-in rule table of the classifier (DESIGN.md, "Error categories")."""

from __future__ import annotations

import errno as errno_codes
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from schemas.vocabulary import CATEGORIES, Category, Severity

__all__ = [
    "BUILTIN_RULES",
    "CATEGORIES",
    "Category",
    "ClassifierConfigError",
    "Rule",
    "Severity",
    "compile_pattern",
    "default_severity",
]


DEFAULT_SEVERITY: dict[Category, Severity] = {
    "transient": "medium",
    "resource": "high",
    "validation": "low",
    "permanent": "high",
}


def default_severity(category: Category) -> Severity:
    return DEFAULT_SEVERITY[category]


class ClassifierConfigError(ValueError):
    """A rule or rules file is invalid; the message names the rule and the problem."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: exactly one of ``types``, ``errnos``, ``statuses`` or ``message``."""

    name: str
    category: Category
    types: tuple[str, ...] = ()
    errnos: tuple[int, ...] = ()
    statuses: tuple[int, ...] = ()
    message: re.Pattern[str] | None = None
    severity: Severity | None = None

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ClassifierConfigError(
                f"rule {self.name!r}: category must be one of {', '.join(CATEGORIES)}, "
                f"not {self.category!r}"
            )
        kinds = sum(bool(x) for x in (self.types, self.errnos, self.statuses, self.message))
        if kinds != 1:
            raise ClassifierConfigError(
                f"rule {self.name!r}: give exactly one of types, errnos, statuses or message"
            )

    @property
    def stage(self) -> int:
        if self.types:
            return 1
        if self.errnos or self.statuses:
            return 2
        return 3

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Rule:
        """A rule from a TOML table: ``name``, ``category`` and one matcher."""
        name = str(data.get("name") or "unnamed")
        unknown = set(data) - {
            "name",
            "category",
            "types",
            "errnos",
            "statuses",
            "message",
            "severity",
        }
        if unknown:
            raise ClassifierConfigError(f"rule {name!r}: unknown key(s) {sorted(unknown)}")
        try:
            message = data.get("message")
            return cls(
                name=name,
                category=cast(Category, data.get("category")),
                types=tuple(data.get("types", ())),
                errnos=tuple(_errno(e) for e in data.get("errnos", ())),
                statuses=tuple(int(s) for s in data.get("statuses", ())),
                message=compile_pattern(message) if message else None,
                severity=data.get("severity"),
            )
        except (TypeError, ValueError, re.error) as exc:
            if isinstance(exc, ClassifierConfigError):
                raise
            raise ClassifierConfigError(f"rule {name!r}: {exc}") from exc


def _errno(value: int | str) -> int:
    if isinstance(value, int):
        return value
    code = getattr(errno_codes, value, None)
    if not isinstance(code, int):
        raise ClassifierConfigError(f"unknown errno name {value!r}")
    return code


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A case-insensitive message pattern."""
    return re.compile(pattern, re.IGNORECASE)


_rx = compile_pattern

_TRANSIENT_TYPES = (
    "builtins.ConnectionResetError",
    "builtins.ConnectionRefusedError",
    "builtins.ConnectionAbortedError",
    "builtins.BrokenPipeError",
    "builtins.TimeoutError",
    "asyncio.exceptions.TimeoutError",
    "concurrent.futures._base.TimeoutError",
    "socket.timeout",
    "socket.gaierror",
    "httpx.TimeoutException",
    "httpx.NetworkError",
    "httpx.RemoteProtocolError",
    "httpcore.TimeoutException",
    "httpcore.NetworkError",
    "requests.exceptions.Timeout",
    "requests.exceptions.ConnectionError",
    "urllib3.exceptions.TimeoutError",
    "urllib3.exceptions.ProtocolError",
    "aiohttp.client_exceptions.ServerTimeoutError",
    "aiohttp.client_exceptions.ClientConnectionError",
    "aiohttp.client_exceptions.ServerDisconnectedError",
    "websockets.exceptions.ConnectionClosedError",
)

BUILTIN_RULES: tuple[Rule, ...] = (
    Rule("builtin:network", "transient", types=_TRANSIENT_TYPES),
    Rule(
        "builtin:out-of-memory",
        "resource",
        types=("builtins.MemoryError", "torch.cuda.OutOfMemoryError", "torch.OutOfMemoryError"),
    ),
    Rule(
        "builtin:validation-types",
        "validation",
        types=(
            "pydantic_core._pydantic_core.ValidationError",
            "pydantic.error_wrappers.ValidationError",
            "jsonschema.exceptions.ValidationError",
            "builtins.ValueError",
            "builtins.TypeError",
        ),
    ),
    Rule("builtin:permission", "permanent", types=("builtins.PermissionError",)),
    Rule(
        "builtin:errno-network",
        "transient",
        errnos=(
            errno_codes.ECONNRESET,
            errno_codes.ECONNREFUSED,
            errno_codes.ECONNABORTED,
            errno_codes.ETIMEDOUT,
            errno_codes.EHOSTUNREACH,
            errno_codes.ENETUNREACH,
            errno_codes.ENETDOWN,
            errno_codes.EPIPE,
            errno_codes.EAGAIN,
        ),
    ),
    Rule(
        "builtin:errno-resource",
        "resource",
        errnos=(errno_codes.ENOSPC, errno_codes.ENOMEM, errno_codes.EDQUOT),
    ),
    Rule("builtin:errno-permission", "permanent", errnos=(errno_codes.EACCES, errno_codes.EPERM)),
    Rule("builtin:http-retryable", "transient", statuses=(408, 425, 429, 500, 502, 503, 504)),
    Rule("builtin:http-auth-missing", "permanent", statuses=(401, 403, 404, 410)),
    Rule("builtin:http-bad-request", "validation", statuses=(400, 413, 415, 422)),
    Rule(
        "builtin:message-cuda-oom",
        "resource",
        message=_rx(r"cuda\b.*out of memory|out of memory"),
    ),
    Rule(
        "builtin:message-gpu-unavailable",
        "resource",
        message=compile_pattern(
            r"gpus? (is |are )?(not |un)available|no (cuda )?gpus? (is |are )?available"
            r"|cuda-capable device.*(busy|unavailable)"
        ),
    ),
    Rule(
        "builtin:message-disk-full",
        "resource",
        message=_rx(r"no space left on device|disk (is )?full"),
    ),
    Rule(
        "builtin:message-model-not-found",
        "permanent",
        message=compile_pattern(
            r"model\b.*\bnot found|no such model|unknown model|model_not_found"
        ),
    ),
    Rule(
        "builtin:message-permission",
        "permanent",
        message=_rx(r"permission denied|access denied"),
    ),
    Rule(
        "builtin:message-network",
        "transient",
        message=compile_pattern(
            r"connection (reset|refused|aborted)|broken pipe|timed? ?out\b"
            r"|temporarily unavailable|network is unreachable|try again"
        ),
    ),
)
