"""`mcpdo serve`: the embedded default on a laptop, one process serving MCP over HTTP."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path

import uvicorn

from mcpdo.bootstrap import App, authorization_servers
from mcpdo.ratelimit import RateLimits
from mcpdo.sdk.ai import show_usage_logs
from mcpdo.server.http import build_http_app


async def serve_http(app: App) -> int:
    """Serve until interrupted. On the very first run, create an admin key and print a client config."""
    settings = app.settings
    url = f"http://{settings.host}:{settings.port}/mcp"
    first_key = None
    if not await app.auth.list_keys():
        first_key, _ = await app.auth.create_key("admin", roles=("admin",))
    limits = RateLimits.per_minute(settings.rate_limit_anonymous, settings.rate_limit_authenticated)
    asgi = build_http_app(
        app.tool,
        app.auth,
        public_url=settings.public_url or f"http://{settings.host}:{settings.port}",
        limits=limits,
        allowed_hosts=_loopback_hosts(settings.host, settings.port),
        trusted_proxies=settings.auth.trusted_proxies,
        authorization_servers=authorization_servers(settings),
    )
    # Forwarded headers are read by the app, only from MCPDO_TRUSTED_PROXIES: uvicorn's own default would
    # believe any client on loopback.
    config = uvicorn.Config(
        asgi,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    show_usage_logs(logging.StreamHandler())
    print(banner(url, first_key, settings.data_dir, interactive=sys.stdout.isatty()), flush=True)
    await server.serve()
    return 0


FIRST_KEY_FILE = "first-admin-key"


def banner(url: str, first_key: str | None, data_dir: Path, *, interactive: bool) -> str:
    """What `make serve` prints: where to connect, the CLI and the state folder, and on first run the admin
    key (on a terminal) or the owner-only file it was written to (anywhere else: output that is not a
    terminal ends up in logs, and logs never hold keys)."""
    cli = cli_path()
    lines = [
        f"mcpdo is serving MCP at {url} (Ctrl-C to stop)",
        f"  state folder: {data_dir}",
        f"  command line: {cli} (run it with MCPDO_DATA_DIR={data_dir} from another folder)",
    ]
    if not first_key:
        lines.append(f"Authenticate with 'Authorization: Bearer sk_...' ({cli} keys create --name NAME)")
        return "\n".join(lines)
    if interactive:
        shown, where = first_key, "It is shown only this once:"
        header = f"Bearer {first_key}"
    else:
        path = write_private(data_dir / FIRST_KEY_FILE, first_key + "\n")
        shown, where = str(path), "It was written to this file, readable only by you (delete it once copied):"
        header = f"Bearer <the key in {path}>"
    config = {"mcpServers": {"mcpdo": {"type": "http", "url": url, "headers": {"Authorization": header}}}}
    lines += [
        "",
        f"First run: created an admin API key. {where}",
        f"  {shown}",
        "",
        "Paste into your MCP client's configuration:",
        json.dumps(config, indent=2),
        "",
        f"More keys: {cli} keys create --name NAME",
    ]
    return "\n".join(lines)


def cli_path() -> str:
    """The full path of the running `mcpdo`, so the banner's commands work from any folder."""
    found = shutil.which(sys.argv[0]) if sys.argv and sys.argv[0] else None
    return str(Path(found or sys.argv[0] or "mcpdo").resolve())


def write_private(path: Path, text: str) -> Path:
    """Write `text` to a file only its owner may read (created so, never readable in between)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def _loopback_hosts(host: str, port: int) -> list[str] | None:
    """DNS-rebinding protection on loopback binds; a wider bind is deliberate and sits behind a proxy."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    return [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"]
