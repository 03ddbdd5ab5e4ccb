"""Error classification: an ordered rule list (DESIGN.md, "Error categories").

Stages, in order: the exception's own category (``errorflow_category``) → registered
exception types (matched by qualified name along the MRO, so optional libraries such
as ``torch.cuda.OutOfMemoryError`` need not be importable) → errno and HTTP status →
message patterns → the configured default. Within a stage, user rules come before the
built-in ones. When an exception falls through to the default, its ``__cause__`` /
``__context__`` chain is tried the same way. Every result names the rule that matched.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, cast

from producers.rules import (
    BUILTIN_RULES,
    CATEGORIES,
    Category,
    ClassifierConfigError,
    Rule,
    Severity,
    compile_pattern,
    default_severity,
)
from schemas.vocabulary import SEVERITIES

__all__ = [
    "CATEGORIES",
    "Classification",
    "Classifier",
    "ClassifierConfigError",
    "Rule",
    "http_status_of",
    "retry_after_of",
]


@dataclass(frozen=True, slots=True)
class Classification:
    category: Category
    rule: str
    severity: Severity
    retryable: bool
    retry_after: float | None = None
    http_status: int | None = None


def http_status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, from the attributes common clients use."""
    holders = (exc, getattr(exc, "response", None))
    for holder in holders:
        if holder is None:
            continue
        for attr in ("status_code", "status"):
            value = getattr(holder, attr, None)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
    code = getattr(exc, "code", None)
    if isinstance(code, int) and 100 <= code <= 599 and not isinstance(exc, OSError):
        return code
    return None


def _parse_retry_after(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return max(0.0, float(value))
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime

    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds to wait from a ``retry_after`` attribute or a ``Retry-After`` header."""
    direct = getattr(exc, "retry_after", None)
    if direct is not None:
        return _parse_retry_after(direct)
    for holder in (exc, getattr(exc, "response", None)):
        headers = getattr(holder, "headers", None)
        if headers is not None and hasattr(headers, "get"):
            value = headers.get("Retry-After") or headers.get("retry-after")
            if value is not None:
                return _parse_retry_after(value)
    return None


def _type_names(exc: BaseException) -> list[str]:
    return [f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__]


def _bare(name: str) -> str:
    return name.rsplit(".", 1)[-1]


@dataclass(slots=True)
class Classifier:
    """Classifies exceptions by ordered rules; add rules from code or a TOML file."""

    default_category: Category = "transient"
    rules: list[Rule] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.default_category not in CATEGORIES:
            raise ClassifierConfigError(f"default category {self.default_category!r} is unknown")

    def add_rule(self, rule: Rule) -> None:
        """Add a user rule; it is tried before the built-in rules of its stage."""
        self.rules.append(rule)

    def add(self, name: str, category: Category, **matcher: Any) -> Rule:
        """Shorthand: ``add("quota", "resource", types=("mylib.QuotaError",))``."""
        if isinstance(matcher.get("message"), str):
            matcher["message"] = compile_pattern(matcher["message"])
        for key in ("types", "errnos", "statuses"):
            if key in matcher:
                matcher[key] = tuple(
                    f"{t.__module__}.{t.__qualname__}" if isinstance(t, type) else t
                    for t in matcher[key]
                )
        rule = Rule(name=name, category=category, **matcher)
        self.add_rule(rule)
        return rule

    def load_toml(self, path: str | Path) -> None:
        """Load ``default_category`` and ``[[rules]]`` from a TOML file."""
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ClassifierConfigError(f"cannot read rules file {path}: {exc}") from exc
        default = data.get("default_category")
        if default is not None:
            if default not in CATEGORIES:
                raise ClassifierConfigError(f"{path}: default_category {default!r} is unknown")
            self.default_category = default
        for table in data.get("rules", ()):
            self.add_rule(Rule.from_mapping(table))

    def _ordered(self) -> Iterable[Rule]:
        for stage in (1, 2, 3):
            yield from (r for r in self.rules if r.stage == stage)
            yield from (r for r in BUILTIN_RULES if r.stage == stage)

    def _match(self, exc: BaseException) -> tuple[Rule, int | None] | None:
        names = _type_names(exc)
        bare = {_bare(n) for n in names}
        err = getattr(exc, "errno", None)
        status = http_status_of(exc)
        message = str(exc)
        for rule in self._ordered():
            if rule.types and any(t in names or ("." not in t and t in bare) for t in rule.types):
                return rule, status
            if rule.errnos and err in rule.errnos:
                return rule, status
            if rule.statuses and status in rule.statuses:
                return rule, status
            if rule.message is not None and (
                rule.message.search(message) or rule.message.search(names[0])
            ):
                return rule, status
        return None

    def classify(self, exc: BaseException) -> Classification:
        """The category of ``exc`` and the rule that decided it."""
        own = _explicit(exc)
        if own is not None:
            return own
        chain: list[BaseException] = []
        current: BaseException | None = exc
        while current is not None and current not in chain and len(chain) < 5:
            chain.append(current)
            matched = self._match(current)
            if matched is not None:
                rule, status = matched
                prefix = "" if current is exc else "cause:"
                return Classification(
                    category=rule.category,
                    rule=prefix + rule.name,
                    severity=rule.severity or _severity(exc, rule.category),
                    retryable=rule.category == "transient",
                    retry_after=retry_after_of(exc) or retry_after_of(current),
                    http_status=status,
                )
            current = current.__cause__ or current.__context__
        return Classification(
            category=self.default_category,
            rule="default",
            severity=_severity(exc, self.default_category),
            retryable=self.default_category == "transient",
            retry_after=retry_after_of(exc),
            http_status=http_status_of(exc),
        )


def _severity(exc: BaseException, category: Category) -> Severity:
    own = getattr(exc, "errorflow_severity", None)
    if own in SEVERITIES:
        return cast(Severity, own)
    return default_severity(category)


def _explicit(exc: BaseException) -> Classification | None:
    category = getattr(exc, "errorflow_category", None)
    if category is None:
        return None
    if category not in CATEGORIES:
        return None
    cat = cast(Category, category)
    return Classification(
        category=cat,
        rule=f"explicit:{type(exc).__qualname__}",
        severity=_severity(exc, cat),
        retryable=cat == "transient",
        retry_after=retry_after_of(exc),
        http_status=http_status_of(exc),
    )
