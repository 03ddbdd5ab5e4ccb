"""The supervisor's side of self-healing: restarts of workers that stopped heartbeating.

A worker that stopped heartbeating cannot restart itself, so self-healing addresses its
``restart_worker`` to the supervisor (``params.via = "supervisor"``). Any process with a
supervisor hook — ``healing_supervisor_cmd`` (``ERRORFLOW_HEALING_SUPERVISOR_CMD``) or a
callable (``handler.register_supervisor_hook``), or ``errorflow supervise`` — joins the
consumer group ``<command_group>.supervisor``, so each restart goes to one of them, and
runs it once per command id (the ledger). Expired and dry-run actions are reported
``skipped``; the answer is a ``healing.result`` for the lost worker: ``done`` with the
command's exit code (or the hook's return), ``failed`` with why.

The command runs without a shell: it is split like a shell line once, and only the
placeholders ``{worker_id}``, ``{host}`` and ``{runner_id}`` are replaced inside its
arguments, by values that must look like ids (letters, digits, ``._:@-``), so nothing
on the wire can add an argument or run a second command.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
from typing import Any

from producers.healing import HealingListener
from producers.invoke import call_user_function
from schemas import RunHealingAction

__all__ = ["SupervisorListener", "supervisor_argv"]

_ID = re.compile(r"[A-Za-z0-9._:@-]{1,200}")


def supervisor_argv(template: str, values: dict[str, str]) -> list[str]:
    """The command's arguments with the placeholders replaced; ValueError for a value
    that is not id-like (it came from the wire)."""
    for name, value in values.items():
        if not _ID.fullmatch(value):
            raise ValueError(f"{name} {value[:60]!r} is not an id (letters, digits, ._:@-)")
    argv = []
    for part in shlex.split(template):
        for name, value in values.items():
            part = part.replace("{" + name + "}", value)
        argv.append(part)
    if not argv:
        raise ValueError("healing_supervisor_cmd is empty")
    return argv


class SupervisorListener(HealingListener):
    ledger_name = "supervisor"

    @property
    def group_id(self) -> str:
        return f"{self.handler.config.command_group}.supervisor"

    def accepts(self, command: RunHealingAction) -> bool:
        return command.for_supervisor and command.worker_id != self.worker_id

    async def _run(self, command: RunHealingAction) -> tuple[str, dict[str, Any]]:
        handler, params = self.handler, command.params
        values = {
            "worker_id": command.worker_id,
            "host": str(params.get("host") or ""),
            "runner_id": str(params.get("runner_id") or ""),
        }
        hook = handler.supervisor_hook
        if hook is not None:
            result = await call_user_function(hook, {**params, **values})
            return "done", {
                "via": "supervisor",
                "hook": getattr(hook, "__name__", "supervisor"),
                "result": repr(result)[:500],
                "by": self.worker_id,
            }
        template = handler.config.healing_supervisor_cmd or ""
        try:
            argv = supervisor_argv(template, {k: v for k, v in values.items() if v})
        except ValueError as exc:
            return "failed", {"via": "supervisor", "error": str(exc), "by": self.worker_id}
        env = {
            **os.environ,
            "ERRORFLOW_LOST_WORKER_ID": values["worker_id"],
            "ERRORFLOW_LOST_HOST": values["host"],
            "ERRORFLOW_LOST_RUNNER_ID": values["runner_id"],
        }
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        timeout = handler.config.healing_supervisor_timeout_s
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return "failed", {
                "via": "supervisor",
                "error": f"{argv[0]} did not finish in {timeout:.0f}s",
                "by": self.worker_id,
            }
        details = {
            "via": "supervisor",
            "command": argv[0],
            "exit_code": proc.returncode,
            "output": output.decode(errors="replace")[-500:],
            "by": self.worker_id,
        }
        return ("done" if proc.returncode == 0 else "failed"), details
