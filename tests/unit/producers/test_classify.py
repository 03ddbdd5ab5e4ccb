"""Every built-in classification rule, user rules from code and TOML, and the default."""

from __future__ import annotations

import errno
import types
from pathlib import Path

import pydantic
import pytest

from producers import Classifier, ClassifierConfigError, ResourceError, TransientError
from producers import ValidationError as SDKValidationError


def _fake(module: str, name: str, base: type[BaseException] = Exception) -> type[BaseException]:
    """An exception class that looks like it came from an optional library."""
    cls = types.new_class(name, (base,))
    cls.__module__ = module
    cls.__qualname__ = name
    return cls


class _Response:
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.headers = headers or {}


class HTTPStatusError(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.response = _Response(status, headers)


def _pydantic_error() -> Exception:
    class M(pydantic.BaseModel):
        x: int

    try:
        M(x="nope")  # type: ignore[arg-type]
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


CASES = [
    (ConnectionResetError("reset by peer"), "transient", "builtin:network"),
    (ConnectionRefusedError(), "transient", "builtin:network"),
    (ConnectionAbortedError(), "transient", "builtin:network"),
    (TimeoutError(), "transient", "builtin:network"),
    (TimeoutError(), "transient", "builtin:network"),
    (
        _fake("httpx", "ReadTimeout", _fake("httpx", "TimeoutException"))(),
        "transient",
        "builtin:network",
    ),
    (_fake("requests.exceptions", "ConnectionError")(), "transient", "builtin:network"),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), "transient", "builtin:errno-network"),
    (MemoryError(), "resource", "builtin:out-of-memory"),
    (
        _fake("torch.cuda", "OutOfMemoryError")("CUDA out of memory"),
        "resource",
        "builtin:out-of-memory",
    ),
    (
        RuntimeError("CUDA error: out of memory. Tried to allocate 2.00 GiB"),
        "resource",
        "builtin:message-cuda-oom",
    ),
    (RuntimeError("GPU unavailable on this node"), "resource", "builtin:message-gpu-unavailable"),
    (OSError(errno.ENOSPC, "No space left on device"), "resource", "builtin:errno-resource"),
    (_pydantic_error(), "validation", "builtin:validation-types"),
    (SDKValidationError("prompt is empty"), "validation", "explicit:ValidationError"),
    (ValueError("width must be a multiple of 8"), "validation", "builtin:validation-types"),
    (TypeError("expected str"), "validation", "builtin:validation-types"),
    (PermissionError(errno.EACCES, "Permission denied"), "permanent", "builtin:permission"),
    (
        _fake("fsspec", "StoreError", OSError)(errno.EACCES, "denied"),
        "permanent",
        "builtin:errno-permission",
    ),
    (
        RuntimeError("model sdxl-turbo not found in store"),
        "permanent",
        "builtin:message-model-not-found",
    ),
    (HTTPStatusError(401), "permanent", "builtin:http-auth-missing"),
    (HTTPStatusError(403), "permanent", "builtin:http-auth-missing"),
    (HTTPStatusError(404), "permanent", "builtin:http-auth-missing"),
    (HTTPStatusError(429), "transient", "builtin:http-retryable"),
    (HTTPStatusError(502), "transient", "builtin:http-retryable"),
    (HTTPStatusError(503), "transient", "builtin:http-retryable"),
    (HTTPStatusError(504), "transient", "builtin:http-retryable"),
    (RuntimeError("upstream: connection reset"), "transient", "builtin:message-network"),
]


@pytest.mark.parametrize(("exc", "category", "rule"), CASES, ids=lambda v: repr(v)[:40])
def test_builtin_rules(exc: BaseException, category: str, rule: str) -> None:
    """Each built-in rule gives the documented category and names itself."""
    result = Classifier().classify(exc)
    assert (result.category, result.rule) == (category, rule)
    assert result.retryable is (category == "transient")


def test_retry_after_header_is_honoured() -> None:
    """A 503 with Retry-After: 7 carries retry_after=7 seconds."""
    result = Classifier().classify(HTTPStatusError(503, {"Retry-After": "7"}))
    assert result.retry_after == 7.0
    assert result.http_status == 503


def test_user_category_by_attribute_and_base_class() -> None:
    """An exception's own errorflow_category wins over every other rule."""

    class QuotaExceeded(ResourceError):
        pass

    class Flaky(ValueError):
        errorflow_category = "transient"

    assert Classifier().classify(QuotaExceeded("quota")).category == "resource"
    assert Classifier().classify(Flaky("x")).category == "transient"
    assert Classifier().classify(TransientError("x")).rule == "explicit:TransientError"


def test_user_rules_from_code_precede_builtins() -> None:
    """A user type rule overrides the built-in ValueError → validation."""
    classifier = Classifier()
    classifier.add("decode-glitch", "transient", types=(UnicodeDecodeError,))
    exc = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")
    assert classifier.classify(exc).rule == "decode-glitch"
    assert classifier.classify(ValueError("x")).category == "validation"


def test_rules_from_toml_file(tmp_path: Path) -> None:
    """default_category and [[rules]] load from a TOML file."""
    path = tmp_path / "rules.toml"
    path.write_text(
        'default_category = "permanent"\n'
        '[[rules]]\nname = "comfy-queue-full"\ncategory = "transient"\nmessage = "queue is full"\n'
        '[[rules]]\nname = "teapot"\ncategory = "validation"\nstatuses = [418]\n'
    )
    classifier = Classifier()
    classifier.load_toml(path)
    assert classifier.classify(RuntimeError("ComfyUI: Queue is full")).rule == "comfy-queue-full"
    assert classifier.classify(HTTPStatusError(418)).rule == "teapot"
    unknown = classifier.classify(KeyError("mystery"))
    assert (unknown.category, unknown.rule) == ("permanent", "default")


def test_bad_rule_files_say_what_is_wrong(tmp_path: Path) -> None:
    """An unknown category or a rule with no matcher is refused by name."""
    path = tmp_path / "rules.toml"
    path.write_text('[[rules]]\nname = "oops"\ncategory = "sometimes"\nmessage = "x"\n')
    with pytest.raises(ClassifierConfigError, match="oops.*category"):
        Classifier().load_toml(path)
    path.write_text('[[rules]]\nname = "empty"\ncategory = "transient"\n')
    with pytest.raises(ClassifierConfigError, match="empty.*exactly one"):
        Classifier().load_toml(path)


def test_unknown_errors_get_the_configured_default() -> None:
    """Nothing matches KeyError: the default category applies, rule 'default'."""
    assert Classifier().classify(KeyError("k")).category == "transient"
    assert Classifier(default_category="permanent").classify(KeyError("k")).category == "permanent"


def test_cause_chain_is_consulted_when_nothing_matches() -> None:
    """A wrapper exception is classified by its cause, and says so."""
    try:
        try:
            raise ConnectionResetError("reset")
        except ConnectionResetError as inner:
            raise KeyError("wrapped") from inner
    except KeyError as outer:
        result = Classifier().classify(outer)
    assert (result.category, result.rule) == ("transient", "cause:builtin:network")
