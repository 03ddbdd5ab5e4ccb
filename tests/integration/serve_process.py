"""Run ``errorflow serve`` (sink + API) as a separate process and query it over HTTP."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.process import ROOT, ChildProcess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


TOKEN = "it-token-0123456789abcdef"  # noqa: S105 - a test token


class ServeProcess(ChildProcess):
    def __init__(
        self, bootstrap: str, data_dir: Path, *, group_id: str, env: dict[str, str] | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.data_dir = data_dir
        self.group_id = group_id
        self.port = free_port()
        self.extra_env = env or {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ServeProcess:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "ERRORFLOW_DATA_DIR": str(self.data_dir),
            "ERRORFLOW_SINK_GROUP_ID": self.group_id,
            "ERRORFLOW_API_TOKEN": TOKEN,
            "PYTHONPATH": str(ROOT),
            **self.extra_env,
        }
        env.pop("CLICKHOUSE_URL", None)
        self.spawn(["serve", "--port", str(self.port)], env, self.data_dir / "serve.log")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {(self.data_dir / 'serve.log').read_text()}")
            try:
                self.request("GET", "/api/v1/errors/health")
                return self
            except OSError:
                time.sleep(0.3)
        raise TimeoutError("serve did not answer")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        """(status, parsed JSON body) of one request; errors are returned, not raised
        (a connection failure still raises OSError)."""
        sent = {"Content-Type": "application/json"} if body is not None else {}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(  # noqa: S310
            self.url + path, data=data, headers=sent, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                text = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            text, status = exc.read(), exc.code
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text.decode(errors="replace")

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status >= 400 and not path.startswith("/api/v1/errors/health"):
            raise AssertionError(f"GET {path}: {status} {body}")
        return body

    def sql(self, query: str) -> list[list[Any]]:
        status, body = self.request("POST", "/api/v1/sql", {"sql": query})
        if status != 200:
            raise AssertionError(f"SQL {query!r}: {status} {body}")
        rows: list[list[Any]] = body["rows"]
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
