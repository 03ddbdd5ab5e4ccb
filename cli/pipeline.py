"""``errorflow sink``, ``errorflow serve`` and ``errorflow sql``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from deploy.settings import DeploySettings

__all__ = ["register"]


def _serve_file(settings: DeploySettings) -> Path:
    return settings.data_dir / "serve.json"


async def _run_sink(settings: DeploySettings, port: int | None, host: str | None = None) -> None:
    import uvicorn

    from api import create_app
    from api.security import ApiSettings
    from sinks import AsyncClickHouse, ClickHouseSettings, connect
    from sinks.clickhouse import connect_query_client
    from sinks.service import ClickHouseSink

    ch_settings = ClickHouseSettings()
    api_settings = ApiSettings()
    host = host or api_settings.host
    clickhouse = AsyncClickHouse(connect(ch_settings))
    # User SQL gets a session and a thread of its own on a server; with chDB (one client
    # per process) it shares the sink's client and thread, bounded by the guard's 10 s.
    if ch_settings.clickhouse_url is None:
        connect_query_client(ch_settings)
        user_clickhouse = clickhouse
    else:
        user_clickhouse = AsyncClickHouse(connect_query_client(ch_settings))
    sink = ClickHouseSink(
        bootstrap_servers=settings.bootstrap_servers,
        clickhouse=clickhouse,
        database=ch_settings.clickhouse_database,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(sink.run(stop))]
    marker = _serve_file(settings)
    if port is not None:
        app = create_app(
            clickhouse,
            bootstrap_servers=settings.bootstrap_servers,
            database=ch_settings.clickhouse_database,
            health=lambda: {"sink": sink.state()},
            query_clickhouse=user_clickhouse,
            settings=api_settings,
        )
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        # This process's signal handlers stop the sink and the server together; uvicorn
        # must not install its own (it would re-raise SIGTERM before the sink flushed).
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        tasks.append(asyncio.create_task(server.serve()))
        marker.parent.mkdir(parents=True, exist_ok=True)
        local = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        marker.write_text(json.dumps({"pid": os.getpid(), "url": f"http://{local}:{port}"}))
        print(
            f"errorflow serve: API on http://{host}:{port}, sink consuming from "
            f"{settings.bootstrap_servers}"
            + ("" if api_settings.token else " (no ERRORFLOW_API_TOKEN: mutations refused)"),
            flush=True,
        )
    else:
        print(f"errorflow sink: consuming from {settings.bootstrap_servers}", flush=True)
    try:
        await stop.wait()
        if port is not None:
            server.should_exit = True
        await asyncio.gather(*tasks)
    finally:
        if port is not None:
            marker.unlink(missing_ok=True)
        clickhouse.close()
        if user_clickhouse is not clickhouse:
            user_clickhouse.close()


def _sink(args: argparse.Namespace, settings: DeploySettings) -> int:
    asyncio.run(_run_sink(settings, None))
    return 0


def _serve(args: argparse.Namespace, settings: DeploySettings) -> int:
    asyncio.run(_run_sink(settings, args.port, args.host))
    return 0


def _running_service(settings: DeploySettings) -> str | None:
    try:
        info = json.loads(_serve_file(settings).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return str(info["url"])


def _query_service(url: str, sql: str) -> tuple[list[str], list[list[Any]]]:
    headers = {"Content-Type": "application/json"}
    token = os.environ.get("ERRORFLOW_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 - our own loopback service
        f"{url}/api/v1/sql", data=json.dumps({"sql": sql}).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"errorflow sql: {json.loads(exc.read()).get('detail', exc)}") from None
    return body["columns"], body["rows"]


def _query_direct(sql: str) -> tuple[list[str], list[list[Any]]]:
    from sinks import ClickHouseSettings, ClickHouseUnavailable
    from sinks.clickhouse import connect_query_client
    from sinks.guard import LIMITS, SqlRefused, check_sql

    settings = ClickHouseSettings()
    try:
        client = connect_query_client(settings)
    except (ClickHouseUnavailable, ValueError) as exc:
        raise SystemExit(f"errorflow sql: {exc}") from None
    try:
        tree = client.query(f"EXPLAIN AST {sql}")  # parses only, runs nothing
        check_sql([row[0] for row in tree.result_rows], settings.clickhouse_database)
        result = client.query(sql, settings=LIMITS)
    except SqlRefused as exc:
        raise SystemExit(f"errorflow sql: query refused: {exc.reason}") from None
    except Exception as exc:  # noqa: BLE001 - the user's SQL error, shown plainly
        raise SystemExit(f"errorflow sql: {str(exc).splitlines()[0]}") from None
    return list(result.column_names), [list(r) for r in result.result_rows]


def _print(columns: list[str], rows: list[list[Any]], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str, indent=2))
        return
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows(rows)
        sys.stdout.write(out.getvalue())
        return
    cells = [[str(c) for c in columns]] + [[str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for n, row in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def _sql(args: argparse.Namespace, settings: DeploySettings) -> int:
    url = None if os.environ.get("CLICKHOUSE_URL") else _running_service(settings)
    # While `serve` owns the chDB directory, ask it; otherwise open ClickHouse here.
    columns, rows = _query_service(url, args.query) if url else _query_direct(args.query)
    _print(columns, rows, args.format)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sink = sub.add_parser("sink", help="consume every errorflow topic into ClickHouse")
    sink.set_defaults(run=_sink)

    serve = sub.add_parser("serve", help="the sink plus the HTTP API, in one process")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--host", default=None, help="address to bind (ERRORFLOW_API_HOST, default 127.0.0.1)"
    )
    serve.set_defaults(run=_serve)

    sql = sub.add_parser("sql", help="run read-only SQL against errorflow's ClickHouse")
    sql.add_argument("query")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.set_defaults(run=_sql)
