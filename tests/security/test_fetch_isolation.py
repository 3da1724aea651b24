"""api.fetch's shared client between callers: no cookie crosses from one tenant to another, a tiny stacked-gzip
body cannot make the host allocate far past the size cap, one caller's slow fetches do not starve another's,
and credentials stop at the origin they were given for.

Loopback only: every server here listens on 127.0.0.1 and the guard is opened to it with a CIDR allow-list,
as a deployment that allows an internal network would.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from mcpdo.adapters.httpx_web import HttpxWebClient
from mcpdo.errors import McpdoError
from mcpdo.identity import Identity
from mcpdo.netguard import Allowlist
from mcpdo.sdk.fetch import FetchApi

pytestmark = pytest.mark.anyio

TENANT_A = Identity.for_roles(id="key_a", auth_type="apiKey", tenant="tenant-a", roles=("member",))
TENANT_B = Identity.for_roles(id="key_b", auth_type="apiKey", tenant="tenant-b", roles=("member",))


def web_client(*, max_bytes: int = 1024 * 1024, read_timeout_s: float = 2.0) -> HttpxWebClient:
    # One client per deployment (bootstrap._web): every caller of every tenant shares it.
    return HttpxWebClient(
        allow=Allowlist.parse("127.0.0.0/8"),
        connect_timeout_s=2,
        read_timeout_s=read_timeout_s,
        max_response_bytes=max_bytes,
        user_agent="mcpdo-review",
    )


@contextmanager
def server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


# -- 1. the shared client keeps a cookie jar: one tenant's session cookies go out with another's fetches --------


async def test_cookies_set_for_one_tenant_are_not_sent_with_another_tenants_fetch() -> None:
    seen: list[str | None] = []

    class Handler(Quiet):
        def do_GET(self) -> None:
            seen.append(self.headers.get("cookie"))
            if self.path == "/login":
                self.reply(200, b"{}", {"set-cookie": "session=tenant-a-secret-session; Path=/"})
            else:
                self.reply(200, b"{}", {"content-type": "application/json"})

    web = web_client()
    try:
        with server(Handler) as url:
            await FetchApi(TENANT_A, web).fetch([f"{url}/login"])
            await FetchApi(TENANT_B, web).fetch([f"{url}/account"])
            # Even an anonymous caller (who may GET) would ride on tenant A's session.
            await FetchApi(Identity.anonymous(), web).fetch([f"{url}/account"])
    finally:
        await web.close()
    assert seen[1] is None, f"tenant B's fetch carried tenant A's cookie: {seen[1]!r}"
    assert seen[2] is None, f"an anonymous fetch carried tenant A's cookie: {seen[2]!r}"


# -- 2. the size cap is checked after a whole network chunk is decompressed: stacked encodings are a bomb ----------


def _gzip_bomb(decoded_bytes: int) -> bytes:
    """`Content-Encoding: gzip, gzip`: a body of a few KB that decodes to `decoded_bytes` of zeros."""
    inner = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    parts = [inner.compress(zeros) for _ in range(decoded_bytes >> 20)]
    parts.append(inner.flush())
    return gzip.compress(b"".join(parts), 9)


async def test_a_small_stacked_gzip_body_cannot_make_the_host_allocate_far_beyond_the_size_cap() -> None:
    cap = 1024 * 1024
    body = _gzip_bomb(256 * 1024 * 1024)  # 256 MB decoded
    assert len(body) < 16 * 1024  # what crosses the network

    class Handler(Quiet):
        def do_GET(self) -> None:
            self.reply(200, body, {"content-type": "text/plain", "content-encoding": "gzip, gzip"})

    web = web_client(max_bytes=cap)
    try:
        with server(Handler) as url:
            tracemalloc.start()
            try:
                with pytest.raises(McpdoError, match="larger than"):
                    await FetchApi(TENANT_A, web).fetch([f"{url}/bomb"])
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    finally:
        await web.close()
    # The cap is 1 MB; a host that decodes in bounded steps needs a few MB at most, not 256.
    assert peak < 32 * cap, f"a {len(body)}-byte response made the host allocate {peak // (1024 * 1024)} MB"


# -- 3. one caller can hold every connection of the deployment-wide pool: other tenants' fetches starve ------------


class Drip(Quiet):
    """Answers headers, then one byte every 0.3 s, forever: never idle long enough for the read time-out."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", "1000000")
        self.end_headers()
        try:
            for _ in range(200):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.3)
        except OSError:
            return


async def test_one_callers_slow_fetches_do_not_starve_another_tenants_fetch() -> None:
    class Ok(Quiet):
        def do_GET(self) -> None:
            self.reply(200, b"fine", {"content-type": "text/plain"})

    web = web_client(read_timeout_s=1.0)
    attacker = FetchApi(Identity.anonymous(), web)  # anonymous callers may GET
    try:
        with server(Drip) as tarpit, server(Ok) as healthy:
            # 100 concurrent calls: well under MCPDO_MAX_SDK_CALLS (1000), inside one 10 s anonymous budget.
            hogs = [asyncio.ensure_future(attacker.fetch([f"{tarpit}/{i}"])) for i in range(100)]
            await asyncio.sleep(1.0)
            try:
                started = time.monotonic()
                value = await FetchApi(TENANT_B, web).fetch([f"{healthy}/"])
                took = time.monotonic() - started
            except McpdoError as exc:
                value, took = f"{type(exc).__name__}: {exc}", -1.0
            finally:
                for hog in hogs:
                    hog.cancel()
                await asyncio.gather(*hogs, return_exceptions=True)
    finally:
        await web.close()
    assert value == "fine", f"tenant B's fetch of a healthy server failed while another caller held the pool: {value}"
    assert took < 1.0


# -- 4. credentials survive a redirect to another port or scheme of the same host ---------------------------------


async def test_authorization_is_not_sent_on_when_a_redirect_changes_the_port() -> None:
    received: list[str | None] = []

    class Other(Quiet):
        def do_GET(self) -> None:
            received.append(self.headers.get("authorization"))
            self.reply(200, b"other service", {"content-type": "text/plain"})

    with server(Other) as other:

        class First(Quiet):
            def do_GET(self) -> None:
                self.reply(302, b"", {"location": f"{other}/collect"})

        web = web_client()
        try:
            with server(First) as first:
                await FetchApi(TENANT_A, web).fetch(
                    [f"{first}/api", {"headers": {"Authorization": "Bearer tenant-a-token"}}]
                )
        finally:
            await web.close()
    # httpx's own rule (and browsers', requests'): credentials stay with the origin (scheme, host, port).
    assert received == [None], f"the redirect to another port got the credential: {received}"
