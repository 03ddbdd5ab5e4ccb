"""The main job: ``errorflow demo`` end to end on the real broker and chDB."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.process import ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


def test_demo_fleet_opens_then_recovers_after_the_outage(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """comfyui goes down and comes back: the fleet breaker opens and closes again, and
    the runners complete tasks after the outage. (A leaked probe slot once left every
    call rejected to the end; that depends on timing, so unit tests in
    test_breaker.py pin the cause — this guards the main job as a whole.)"""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ERRORFLOW_DATA_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--seconds", "24"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    transitions = re.findall(r"fleet breaker comfyui -> (\w+)", out)
    assert "open" in transitions, out[-3000:]
    assert transitions[-1] == "closed", out[-3000:]
    recovered = re.search(r"after comfyui came back the fleet completed (\d+) tasks", out)
    assert recovered is not None, out[-3000:]
    assert int(recovered.group(1)) > 0, out[-3000:]
