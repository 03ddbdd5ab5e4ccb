"""Run ``errorflow serve`` (sink + API) as a separate process and query it over HTTP."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.process import ROOT, ChildProcess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess(ChildProcess):
    def __init__(self, bootstrap: str, data_dir: Path, *, group_id: str) -> None:
        self.bootstrap = bootstrap
        self.data_dir = data_dir
        self.group_id = group_id
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ServeProcess:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "ERRORFLOW_DATA_DIR": str(self.data_dir),
            "ERRORFLOW_SINK_GROUP_ID": self.group_id,
            "PYTHONPATH": str(ROOT),
        }
        env.pop("CLICKHOUSE_URL", None)
        self.spawn(["serve", "--port", str(self.port)], env, self.data_dir / "serve.log")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {(self.data_dir / 'serve.log').read_text()}")
            try:
                self.get("/api/v1/errors/health")
                return self
            except OSError:
                time.sleep(0.3)
        raise TimeoutError("serve did not answer")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())

    def sql(self, query: str) -> list[list[Any]]:
        request = urllib.request.Request(  # noqa: S310
            self.url + "/api/v1/sql",
            data=json.dumps({"sql": query}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            rows: list[list[Any]] = json.loads(response.read())["rows"]
        return rows

    def wait_for(self, query: str, expected: Any, timeout_s: float = 120.0) -> Any:
        """Poll ``query`` (one value) until it equals ``expected``; return the last value."""
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = self.sql(query)[0][0]
            if value == expected:
                return value
            time.sleep(0.5)
        return value
