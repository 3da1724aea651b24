"""`mcpdo serve`: the embedded default on a laptop, one process serving MCP over HTTP."""

from __future__ import annotations

import json
import logging
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
    print(banner(url, first_key, settings.data_dir), flush=True)
    await server.serve()
    return 0


def banner(url: str, first_key: str | None, data_dir: Path) -> str:
    """What `make serve` prints: where to connect, and on first run the admin key and a client config."""
    lines = [f"mcpdo is serving MCP at {url} (state in {data_dir}; Ctrl-C to stop)"]
    if first_key:
        config = {
            "mcpServers": {"mcpdo": {"type": "http", "url": url, "headers": {"Authorization": f"Bearer {first_key}"}}}
        }
        lines += [
            "",
            "First run: created an admin API key. It is shown only this once:",
            f"  {first_key}",
            "",
            "Paste into your MCP client's configuration:",
            json.dumps(config, indent=2),
            "",
            "More keys: mcpdo keys create --name NAME",
        ]
    else:
        lines.append("Authenticate with 'Authorization: Bearer sk_...' (mcpdo keys create --name NAME)")
    return "\n".join(lines)


def _loopback_hosts(host: str, port: int) -> list[str] | None:
    """DNS-rebinding protection on loopback binds; a wider bind is deliberate and sits behind a proxy."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    return [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"]
