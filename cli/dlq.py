"""``errorflow dlq list|replay``: the dead letter queue, for people."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from datetime import UTC, datetime

from deploy.settings import DeploySettings
from streams.recovery.dead_letters import Selection, plan_for, read_letters, replay

__all__ = ["register"]


def _when(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(frozenset(args.task_id or ()), args.fingerprint, args.since, args.until)


def _list(args: argparse.Namespace, settings: DeploySettings) -> int:
    letters = asyncio.run(read_letters(settings.bootstrap_servers, _selection(args)))
    if args.format == "json":
        for letter in letters:
            print(letter.model_dump_json())
        return 0
    print(f"{'dead-lettered at':<24} {'task':<28} {'template':<18} {'tries':>5}  last error")
    for letter in letters:
        last = letter.errors[-1] if letter.errors else None
        error = f"{last.category}: {last.error_type} [{last.fingerprint}]" if last else "-"
        when = letter.occurred_at.isoformat(timespec="seconds")
        print(
            f"{when:<24} {letter.task_id:<28} {letter.template_id:<18} {letter.attempts:>5}  "
            f"{error}"
        )
    print(f"{len(letters)} dead-lettered task(s)")
    return 0


def _replay(args: argparse.Namespace, settings: DeploySettings) -> int:
    selection = _selection(args)
    if not (selection.narrows or args.all):
        print(
            "errorflow dlq replay: say what to replay (--task-id, --fingerprint, "
            "--since/--until), or --all",
            file=sys.stderr,
        )
        return 2
    bootstrap = settings.bootstrap_servers
    letters, plan = asyncio.run(plan_for(bootstrap, selection, force=args.force))
    print(
        f"matched {len(letters)}; to replay {len(plan.replay)}; "
        f"held back (breaker open) {len(plan.refused)}"
    )
    for letter, service in plan.refused:
        print(f"  held back {letter.task_id}: breaker for {service} is open (--force replays it)")
    if args.dry_run:
        for letter in plan.replay:
            print(f"  would replay {letter.task_id} ({letter.template_id})")
        print("dry run: nothing sent")
        return 0
    sent = asyncio.run(
        replay(
            bootstrap,
            plan.replay,
            who=args.by,
            rate_per_s=args.rate,
            progress=lambda c: print(f"  replayed {c.task_id} as command {c.command_id}"),
        )
    )
    print(f"replayed {len(sent)} task(s)")
    return 1 if plan.refused and not sent else 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task-id", action="append", help="a task id (repeatable)")
    parser.add_argument("--fingerprint", help="an error fingerprint any of its errors has")
    parser.add_argument("--since", type=_when, help="dead-lettered at or after (ISO 8601)")
    parser.add_argument("--until", type=_when, help="dead-lettered before (ISO 8601)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = sub.add_parser("dlq", help="list and replay dead-lettered tasks")
    actions = dlq.add_subparsers(title="actions", metavar="<action>", required=True)

    listing = actions.add_parser("list", help="the dead-lettered tasks (newest letter per task)")
    _common(listing)
    listing.add_argument("--format", choices=["table", "json"], default="table")
    listing.set_defaults(run=_list)

    again = actions.add_parser("replay", help="re-run dead-lettered tasks on the runners")
    _common(again)
    again.add_argument("--all", action="store_true", help="every dead-lettered task")
    again.add_argument("--dry-run", action="store_true", help="count and list, send nothing")
    again.add_argument("--rate", type=float, default=10.0, help="commands per second (10)")
    again.add_argument("--force", action="store_true", help="replay even if a breaker is open")
    again.add_argument("--by", default=getpass.getuser(), help="who replays (for the audit)")
    again.set_defaults(run=_replay)
