"""`mcpdo serve | stdio | run FILE | keys ... | events dead-letters ... | runs | schedules | outbox | audit`."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mcpdo import eventloop, operations
from mcpdo.errors import InputError, McpdoError, NotFound
from mcpdo.settings import Settings
from mcpdo.timeparse import format_iso, utc_now

if TYPE_CHECKING:
    from mcpdo.bootstrap import App

# The commands that start a server: the only ones that may make a new state folder.
CREATES_STATE = ("serve", "stdio")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mcpdo` command."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if getattr(args, "port", None) is not None:
            settings = _replace(settings, port=args.port)
        server = args.command in CREATES_STATE
        operations.configure(settings.log_level or ("info" if server else "warning"), settings.log_format)
        announce_state(settings, args.command)
        code: int = eventloop.run(args.handler(settings, args))
        return code
    except McpdoError as exc:
        print(f"mcpdo: {exc.text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcpdo", description="Business-as-Code over MCP: the `do` tool.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve MCP over HTTP at http://HOST:PORT/mcp")
    serve.add_argument("--port", type=int, default=None, help="port (default $MCPDO_PORT or 8787)")
    serve.set_defaults(handler=_serve)

    stdio = commands.add_parser("stdio", help="serve MCP over stdio (key from $MCPDO_API_KEY)")
    stdio.set_defaults(handler=_stdio)

    run = commands.add_parser("run", help="run a TypeScript file and print its result")
    run.add_argument("file", type=Path)
    run.add_argument("--key", default=None, help="API key to run as (default $MCPDO_API_KEY, else anonymous)")
    run.set_defaults(handler=_run)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--tenant", default=None, help="the key's tenant (default $MCPDO_DEFAULT_TENANT or default)")
    create.add_argument(
        "--role",
        action="append",
        dest="roles",
        default=None,
        help="admin, member, reader or a role of $MCPDO_ROLES (repeatable; default member)",
    )
    create.add_argument("--expires", default=None, help="an instant or 'in 30 days': refused after that")
    create.set_defaults(handler=_keys_create)
    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--tenant", default=None)
    listing.set_defaults(handler=_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=_keys_revoke)

    events = commands.add_parser("events", help="inspect event deliveries").add_subparsers(
        dest="events_command", required=True
    )
    dead = events.add_parser("dead-letters", help="deliveries that exhausted their retries").add_subparsers(
        dest="dead_command", required=True
    )
    dead_list = dead.add_parser("list", help="list dead letters, oldest first")
    dead_list.add_argument("--tenant", default=None)
    dead_list.set_defaults(handler=_dead_letters_list)
    replay = dead.add_parser("replay", help="queue a dead letter again (attempts reset)")
    replay.add_argument("delivery_id")
    replay.set_defaults(handler=_dead_letters_replay)

    runs = commands.add_parser("runs", help="handler runs and their logs").add_subparsers(
        dest="runs_command", required=True
    )
    runs_list = runs.add_parser("list", help="latest handler runs, newest first")
    runs_list.add_argument("--tenant", default=None)
    runs_list.add_argument("--limit", type=int, default=50)
    runs_list.set_defaults(handler=_runs_list)

    schedules = commands.add_parser("schedules", help="live every() schedules").add_subparsers(
        dest="schedules_command", required=True
    )
    schedules_list = schedules.add_parser("list", help="live schedules and their next fire time")
    schedules_list.add_argument("--tenant", default=None)
    schedules_list.set_defaults(handler=_schedules_list)
    fire = schedules.add_parser("fire", help="fire a schedule now (delivered by the running worker)")
    fire.add_argument("handler_id", help="the schedule's id, as `schedules list` shows it")
    fire.add_argument("--tenant", default=None, help="the schedule's tenant (needed when several have that id)")
    fire.set_defaults(handler=_schedules_fire)

    outbox = commands.add_parser("outbox", help="mail sent by the built-in mailer").add_subparsers(
        dest="outbox_command", required=True
    )
    outbox_list = outbox.add_parser("list", help="sent messages, newest first")
    outbox_list.add_argument("--tenant", default=None)
    outbox_list.add_argument("--limit", type=int, default=50)
    outbox_list.set_defaults(handler=_outbox_list)

    audit = commands.add_parser("audit", help="the audit trail of executions").add_subparsers(
        dest="audit_command", required=True
    )
    audit_list = audit.add_parser("list", help="executions, newest first (who, tenant, kind, outcome; no data)")
    audit_list.add_argument("--tenant", default=None)
    audit_list.add_argument("--limit", type=int, default=50)
    audit_list.add_argument("--before", default=None, help="only executions that started before this ISO instant")
    audit_list.set_defaults(handler=_audit_list)
    return parser


def announce_state(settings: Settings, command: str) -> None:
    """Say on stderr which state the command uses; refuse to start a new one anywhere but a server, so that a
    key made from another folder is never made in a state no server reads."""
    if settings.backend == "aws":
        print(f"mcpdo: state table {settings.table}", file=sys.stderr)
        return
    if command not in CREATES_STATE and not settings.database_path.exists():
        raise InputError(
            f"No mcpdo state in {settings.data_dir}: run this where `mcpdo serve` keeps its state, or set "
            "MCPDO_DATA_DIR to the folder the server printed when it started"
        )
    print(f"mcpdo: state folder {settings.data_dir}", file=sys.stderr)


async def _with_app(
    settings: Settings, work: Callable[[App], Awaitable[int]], *, sandbox: bool = True, worker: bool = False
) -> int:
    """Build the app, start what the command needs (the worker only in long-lived processes), clean up."""
    app = await _build(settings, start_sandbox=sandbox)
    try:
        if sandbox:
            await app.start(worker=worker)
        return await work(app)
    finally:
        await app.close()


async def _build(settings: Settings, *, start_sandbox: bool) -> App:
    """The app of `settings`; with `start_sandbox`, its runners are spawned first and the rest of the app is
    imported while Node boots (each takes ~0.1 s: done one after the other, they were most of `mcpdo run`)."""
    if not start_sandbox:
        from mcpdo.bootstrap import build

        return build(settings)
    from mcpdo.sandbox.pool import Sandbox

    sandbox = Sandbox.configured(settings)
    starting = asyncio.create_task(sandbox.start())
    try:
        await asyncio.to_thread(importlib.import_module, "mcpdo.bootstrap")
        from mcpdo.bootstrap import build

        app = build(settings, sandbox=sandbox)
        await starting
    except BaseException:
        starting.cancel()
        await sandbox.close()
        raise
    return app


OfflineCommand = Callable[["App", argparse.Namespace], Awaitable[int]]


def _offline(command: OfflineCommand) -> Callable[[Settings, argparse.Namespace], Awaitable[int]]:
    """A command that only reads or writes the state folder: no sandbox, no worker."""

    async def handler(settings: Settings, args: argparse.Namespace) -> int:
        return await _with_app(settings, lambda app: command(app, args), sandbox=False)

    return handler


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from mcpdo.server.local import serve_http

    return await _with_app(settings, serve_http, worker=True)


async def _stdio(settings: Settings, args: argparse.Namespace) -> int:
    from mcpdo.server.stdio import serve_stdio

    app = await _build(settings, start_sandbox=True)
    try:
        # Check the key before serving (the runners are already booting, but no code runs before this): a bad
        # key is an error, never an anonymous session.
        authorization = f"Bearer {settings.api_key}" if settings.api_key else None
        await app.auth.authenticate(authorization)
        await app.start(worker=True)
        await serve_stdio(app.tool, app.auth, authorization)
        return 0
    finally:
        await app.close()


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        code = args.file.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"mcpdo: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    key = args.key or settings.api_key
    # One script: one runner to start.
    settings = _replace(settings, sandbox_pool_size=1)

    async def work(app: App) -> int:
        identity = await app.auth.authenticate(f"Bearer {key}" if key else None)
        result = await app.tool.call({"script": code}, identity)
        if result.is_error:
            print(result.texts[0], file=sys.stderr)
            return 1
        print(result.texts[0])
        for extra in result.texts[1:]:  # console output, then warnings
            print(extra, file=sys.stderr)
        return 0

    return await _with_app(settings, work)


@_offline
async def _keys_create(app: App, args: argparse.Namespace) -> int:
    # Least privilege: an admin key is asked for by name.
    roles = tuple(args.roles or ["member"])
    secret, key = await app.auth.create_key(args.name, tenant=args.tenant, roles=roles, expires_at=args.expires)
    print(secret)
    expiry = f", expires {key.expires_at}" if key.expires_at else ""
    print(
        f"created {key.id} ({key.name}, tenant {key.tenant}, roles {', '.join(key.roles)}{expiry}); "
        "the key is shown only once",
        file=sys.stderr,
    )
    return 0


@_offline
async def _keys_list(app: App, args: argparse.Namespace) -> int:
    keys = await app.auth.list_keys(args.tenant)
    _print_json(
        [
            {
                "id": k.id,
                "name": k.name,
                "tenant": k.tenant,
                "roles": list(k.roles),
                "prefix": k.prefix + "...",
                "createdAt": k.created_at,
                "expiresAt": k.expires_at,
                "lastUsedAt": k.last_used_at,
                "revokedAt": k.revoked_at,
            }
            for k in keys
        ]
    )
    return 0


@_offline
async def _keys_revoke(app: App, args: argparse.Namespace) -> int:
    await app.auth.revoke_key(args.key_id)
    print(f"revoked {args.key_id}")
    return 0


@_offline
async def _dead_letters_list(app: App, args: argparse.Namespace) -> int:
    _print_json([d.to_json() for d in await app.adapters.deliveries.dead_letters(args.tenant)])
    return 0


@_offline
async def _dead_letters_replay(app: App, args: argparse.Namespace) -> int:
    # The latest version of the module runs it (a fix registered since is what a replay is for).
    await app.deliveries.replay(args.delivery_id)
    runner = "the running server's worker" if app.adapters.local is not None else "the stack's events function"
    print(f"replayed {args.delivery_id}: it will be delivered by {runner}")
    return 0


@_offline
async def _runs_list(app: App, args: argparse.Namespace) -> int:
    _print_json([run.to_json() for run in await app.adapters.runs.runs(args.tenant, args.limit)])
    return 0


@_offline
async def _schedules_list(app: App, args: argparse.Namespace) -> int:
    rows = []
    for entry in await app.adapters.schedules.list(args.tenant):
        upcoming = await app.adapters.schedules.next_fire(entry)
        rows.append(
            {
                "id": entry.handler.handler_id,
                "tenant": entry.handler.tenant,
                "module": entry.handler.module_id,
                "version": entry.handler.version,
                "schedule": entry.schedule,
                "next": format_iso(upcoming) if upcoming else None,
            }
        )
    _print_json(rows)
    return 0


@_offline
async def _schedules_fire(app: App, args: argparse.Namespace) -> int:
    entries = [e for e in await app.adapters.schedules.list(args.tenant) if e.handler.handler_id == args.handler_id]
    if not entries:
        raise NotFound(f"Schedule {args.handler_id} not found; `mcpdo schedules list` shows the live ones")
    if len(entries) > 1:
        tenants = ", ".join(sorted(e.handler.tenant for e in entries))
        raise InputError(f"Schedule {args.handler_id} exists in several tenants ({tenants}): name one with --tenant")
    entry = entries[0]
    event = await app.deliveries.fire(entry, utc_now())
    print(f"fired {args.handler_id} as event {event.id}")
    return 0


@_offline
async def _outbox_list(app: App, args: argparse.Namespace) -> int:
    _print_json(await app.adapters.mailer.list(args.limit, tenant=args.tenant))
    return 0


@_offline
async def _audit_list(app: App, args: argparse.Namespace) -> int:
    entries = await app.adapters.audit.list(args.tenant, args.limit, args.before)
    _print_json([entry.to_json() for entry in entries])
    return 0


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _replace(settings: Settings, **changes: object) -> Settings:
    from dataclasses import replace

    return replace(settings, **changes)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
