"""Schemathesis over the API's own OpenAPI document: no generated input yields a 500."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.serve_process import TOKEN, ServeProcess

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


def test_no_input_yields_a_server_error(kafka_bootstrap: str, tmp_path: Path) -> None:
    """`st run … -c not_a_server_error` (the README's command) passes: every endpoint,
    coverage and fuzzing phases, with the token so mutations are reached too."""
    serve = ServeProcess(kafka_bootstrap, tmp_path, group_id=f"fuzz-{uuid.uuid4().hex[:6]}").start()
    try:
        st = Path(sys.executable).with_name("st")
        out = subprocess.run(
            [
                str(st),
                "run",
                f"{serve.url}/openapi.json",
                "-c",
                "not_a_server_error",
                "-H",
                f"Authorization: Bearer {TOKEN}",
                "-n",
                "15",
                "--phases",
                "coverage,fuzzing",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, "NO_COLOR": "1"},
        )
    finally:
        serve.stop()
    assert out.returncode == 0, out.stdout[-4000:]
    assert "passed" in out.stdout
