"""Recommendations derived from the data (pure: rows in, sentences out)."""

from __future__ import annotations

from typing import Any

__all__ = ["recommend"]


def recommend(
    *,
    fingerprints: list[dict[str, Any]],
    breaker_opens: list[dict[str, Any]],
    resource_errors: list[dict[str, Any]],
    min_retried: int = 5,
    min_opens: int = 3,
) -> list[dict[str, Any]]:
    """What an operator should change, with the numbers that say so."""
    out: list[dict[str, Any]] = []
    for row in fingerprints:
        retried, recovered = row.get("retried_tasks") or 0, row.get("recovered_tasks") or 0
        if retried >= min_retried and recovered == 0 and row.get("category") == "transient":
            out.append(
                {
                    "kind": "reclassify",
                    "fingerprint": row["fingerprint"],
                    "text": (
                        f"fingerprint {row['fingerprint']} ({row['error_type']}) never succeeded "
                        f"on retry (0 of {retried}): classify as permanent"
                    ),
                }
            )
    for row in breaker_opens:
        if row["opens"] >= min_opens:
            out.append(
                {
                    "kind": "breaker",
                    "service": row["service"],
                    "text": (
                        f"breaker {row['service']} opened {row['opens']} times in 1 h: "
                        "raise recovery_timeout or check the service"
                    ),
                }
            )
    for row in resource_errors:
        current, previous = row["current"], row["previous"]
        if current >= 4 and current >= 2 * max(previous, 1):
            out.append(
                {
                    "kind": "capacity",
                    "template_id": row["template_id"],
                    "text": (
                        f"resource errors on template {row['template_id']} went from "
                        f"{previous} to {current}: add GPU capacity"
                    ),
                }
            )
    return out
