"""``get_error_analysis``: asked of the pipeline, never guessed locally."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from producers.config import SDKConfig
from producers.errors import ErrorflowError

__all__ = ["AnalysisUnavailable", "fetch_analysis"]


class AnalysisUnavailable(ErrorflowError):
    """Neither the errorflow API nor ClickHouse could answer; the message says what was tried."""


def _get_json(url: str, timeout_s: float) -> dict[str, Any]:
    if not url.startswith(("http://", "https://")):
        raise AnalysisUnavailable(f"ERRORFLOW_API_URL must be http(s), not {url!r}")
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - checked above
        data = json.loads(response.read())
    if not isinstance(data, dict):
        raise AnalysisUnavailable(f"{url} answered {type(data).__name__}, not an object")
    return data


async def fetch_analysis(config: SDKConfig, window_minutes: int) -> dict[str, Any]:
    """The seed's analysis from the API (``ERRORFLOW_API_URL``), else from ClickHouse
    (``CLICKHOUSE_URL``, via the pipeline's query library)."""
    tried: list[str] = []
    if config.api_url:
        query = urllib.parse.urlencode({"window_minutes": window_minutes})
        url = f"{config.api_url.rstrip('/')}/api/v1/errors/analysis?{query}"
        try:
            return await asyncio.to_thread(_get_json, url, 5.0)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            tried.append(f"API {url}: {exc}")
    if config.clickhouse_url:
        try:
            from sinks.analysis import error_analysis  # the pipeline extra, imported on demand
        except ImportError as exc:
            tried.append(
                f"ClickHouse: the query library is not installed ({exc}); "
                "install errorflow[pipeline]"
            )
        else:
            try:
                result = await error_analysis(config.clickhouse_url, window_minutes)
            except Exception as exc:  # noqa: BLE001 - reported with what was tried
                tried.append(f"ClickHouse: {exc}")
            else:
                return result
    if not tried:
        raise AnalysisUnavailable(
            "no pipeline configured: set ERRORFLOW_API_URL (the errorflow API) or "
            "CLICKHOUSE_URL (a ClickHouse server with errorflow's history)"
        )
    raise AnalysisUnavailable("the pipeline did not answer: " + "; ".join(tried))
