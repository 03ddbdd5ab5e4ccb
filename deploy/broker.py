"""A real single-node Apache Kafka broker (KRaft), fetched from Maven Central and run locally.

Lifecycle: :meth:`LocalBroker.start` fetches the pinned broker jars with ``mvn`` into a
cache outside the repository (reused later), formats KRaft storage once, starts
``kafka.Kafka`` as a detached process logging to a file, and returns once the broker
answers. :meth:`LocalBroker.stop` sends SIGTERM (a clean controlled shutdown) and waits.
Both are idempotent. State (config, data, log, pid) lives under the data directory.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KAFKA_VERSION", "BrokerError", "BrokerStatus", "LocalBroker", "default_cache_dir"]

# 3.9.1 resolves completely from Maven Central with its runtime dependencies (checked
# 2026-11-28); 3.x rather than 4.x because aiokafka/Faust have reported trouble with 4.
KAFKA_VERSION = "3.9.1"
_SLF4J_VERSION = "1.7.36"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.errorflow</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId>
      <version>{slf4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J = """log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.controller=WARN
log4j.logger.state.change.logger=WARN
"""


class BrokerError(Exception):
    """The local broker could not be fetched, started or stopped; the message says why."""


def default_cache_dir() -> Path:
    """Where broker jars are cached: ``ERRORFLOW_CACHE_DIR`` or ``~/.cache/errorflow``."""
    root = os.environ.get("ERRORFLOW_CACHE_DIR") or Path.home() / ".cache" / "errorflow"
    return Path(root) / f"kafka-{KAFKA_VERSION}"


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    log_file: Path

    def describe(self) -> str:
        if self.running:
            return (
                f"kafka {KAFKA_VERSION} running (pid {self.pid}) at {self.bootstrap}; "
                f"log {self.log_file}"
            )
        return f"kafka not running at {self.bootstrap}"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _cluster_id() -> str:
    # Kafka cluster ids are 16 random bytes in unpadded URL-safe base64.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"{tool} not found on PATH: {hint}")
    return path


class LocalBroker:
    """One broker+controller node on 127.0.0.1:``port`` (controller on ``port + 1``)."""

    def __init__(
        self,
        *,
        port: int = 9092,
        data_dir: Path,
        cache_dir: Path | None = None,
        heap: str = "768m",
    ) -> None:
        self.port = port
        self.home = data_dir / f"kafka-{port}"
        self.cache_dir = cache_dir or default_cache_dir()
        self.heap = heap

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.home / "kafka.log"

    @property
    def _pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def _lib(self) -> Path:
        return self.cache_dir / "lib"

    def fetch(self) -> Path:
        """Download the broker jars once; later calls reuse the cache."""
        marker = self._lib / ".complete"
        if marker.exists():
            return self._lib
        _require("java", "install a JDK (17 or newer) to run the Kafka broker")
        mvn = _require("mvn", "install Apache Maven to fetch the Kafka broker jars")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        (self.cache_dir / "pom.xml").write_text(
            _POM.format(kafka=KAFKA_VERSION, slf4j=_SLF4J_VERSION)
        )
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={self._lib}",
                "-DincludeScope=runtime",
            ],
            cwd=self.cache_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not any(self._lib.glob("kafka_2.13-*.jar")):
            tail = (result.stdout + result.stderr).strip()[-2000:]
            raise BrokerError(
                f"mvn could not fetch org.apache.kafka:kafka_2.13:{KAFKA_VERSION}:\n{tail}"
            )
        marker.touch()
        return self._lib

    def status(self) -> BrokerStatus:
        pid = self._read_pid()
        running = pid is not None and _alive(pid) and _port_open("127.0.0.1", self.port)
        return BrokerStatus(running, pid if running else None, self.bootstrap, self.log_file)

    def start(self, *, timeout_s: float = 90.0) -> BrokerStatus:
        """Start the broker unless it already runs; return once it accepts connections."""
        current = self.status()
        if current.running:
            return current
        pid = self._read_pid()
        if pid is not None and _alive(pid):
            return self._wait_ready(pid, timeout_s)  # started earlier, still booting
        java = _require("java", "install a JDK (17 or newer) to run the Kafka broker")
        lib = self.fetch()
        if _port_open("127.0.0.1", self.port):
            raise BrokerError(f"port {self.port} is taken by another process; choose --port")
        self._write_config()
        classpath = f"{lib}/*"
        if not (self.home / "data" / "meta.properties").exists():
            self._format(java, classpath)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [
                    java,
                    f"-Xmx{self.heap}",
                    "-Xms256m",
                    "-XX:+UseG1GC",
                    f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
                    "-cp",
                    classpath,
                    "kafka.Kafka",
                    str(self.home / "server.properties"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI that started it
            )
        self._pid_file.write_text(str(proc.pid))
        return self._wait_ready(proc.pid, timeout_s)

    def stop(self, *, timeout_s: float = 30.0) -> bool:
        """Stop the broker cleanly; returns False when it was not running."""
        pid = self._read_pid()
        if pid is None or not _alive(pid):
            self._pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            self._reap(pid)
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            self._reap(pid)
        self._pid_file.unlink(missing_ok=True)
        return True

    def _read_pid(self) -> int | None:
        try:
            return int(self._pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _reap(pid: int) -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)

    def _wait_ready(self, pid: int, timeout_s: float) -> BrokerStatus:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                raise BrokerError(
                    f"kafka exited during start-up; see {self.log_file}:\n{self._log_tail()}"
                )
            if _port_open("127.0.0.1", self.port) and "Kafka Server started" in self._log_tail(
                20000
            ):
                return self.status()
            time.sleep(0.2)
        raise BrokerError(f"kafka did not answer within {timeout_s:.0f}s; see {self.log_file}")

    def _log_tail(self, size: int = 3000) -> str:
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - size))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        controller = self.port + 1
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.home / "data"),
            "num.partitions": "3",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            # A single-node dev broker: rebalance at once instead of waiting 3 s per group.
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.retention.hours": "168",
        }
        text = "".join(f"{k}={v}\n" for k, v in props.items())
        (self.home / "server.properties").write_text(text)
        (self.home / "log4j.properties").write_text(_LOG4J.format(log=self.log_file))

    def _format(self, java: str, classpath: str) -> None:
        result = subprocess.run(
            [
                java,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={_cluster_id()}",
                "-c",
                str(self.home / "server.properties"),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{result.stdout}{result.stderr}")
