"""The server under benchmark: `mcpdo serve` plus a no-op tool as the baseline. Prints its admin key."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import uvicorn
from mcpdo import eventloop
from mcpdo.bootstrap import build_local
from mcpdo.ratelimit import RateLimits
from mcpdo.server.http import build_http_app
from mcpdo.settings import Settings


async def main(port: int, data_dir: Path) -> None:
    settings = replace(Settings.from_env(), port=port, data_dir=data_dir)
    app = build_local(settings)
    await app.adapters.sandbox.start()
    key, _ = await app.auth.create_key("bench")
    # Rate limits off: the benchmark measures the server, not its quotas.
    asgi = build_http_app(
        app.tool, app.auth, public_url=f"http://127.0.0.1:{port}", with_noop=True, limits=RateLimits.per_minute(0, 0)
    )
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    print(key, flush=True)
    try:
        await server.serve()
    finally:
        await app.close()


if __name__ == "__main__":
    eventloop.run(main(int(sys.argv[1]), Path(sys.argv[2])))
