"""The distribution's promises: a light SDK import and a discoverable command."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("faust", "numpy", "scipy", "chdb", "clickhouse_connect")


def test_importing_the_sdk_pulls_no_pipeline_dependency() -> None:
    """`import producers` loads none of faust, numpy, scipy, chdb, clickhouse_connect."""
    code = (
        "import sys, producers, schemas\n"
        f"print(','.join(m for m in {HEAVY!r} if any(k == m or k.startswith(m + '.') "
        "for k in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_help_lists_subcommands() -> None:
    """`errorflow --help` names the infrastructure subcommands."""
    out = subprocess.run(
        [sys.executable, "-m", "cli", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("kafka", "topics"):
        assert command in out.stdout
