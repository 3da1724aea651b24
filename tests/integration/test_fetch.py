"""`api.fetch` against allow-listed loopback servers: bodies parsed by content type, non-2xx errors with
status and excerpt, the size cap and the read time-out each with its own error, the product's User-Agent,
methods, headers and bodies as sent, credentials dropped when a redirect changes host."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from mcpdo.adapters.httpx_web import HttpxWebClient
from mcpdo.bootstrap import USER_AGENT
from mcpdo.errors import FetchTimeout, HttpStatusError, InputError, ResponseTooLarge
from mcpdo.identity import Identity
from mcpdo.netguard import Address, Allowlist
from mcpdo.sdk.fetch import FetchApi

pytestmark = pytest.mark.anyio

MEMBER = Identity.for_roles(id="key_1", auth_type="apiKey", tenant="t1", roles=("member",))


@dataclass
class Site:
    port: int
    # path -> (status, content type, body, extra headers)
    routes: dict[str, tuple[int, str, bytes, dict[str, str]]] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def site() -> Iterator[Site]:
    state = Site(port=0)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            state.received.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": self.rfile.read(length).decode(),
                }
            )
            status, kind, body, extra = state.routes.get(self.path, (404, "text/plain", b"no such page", {}))
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = int(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


async def named(host: str, port: int) -> list[Address]:
    """`a.test` and `b.test` are two names of loopback (allow-listed by name below)."""
    return [ipaddress.ip_address("127.0.0.1")]


def fetcher(site_port: int, **changes: Any) -> tuple[FetchApi, HttpxWebClient]:
    options: dict[str, Any] = {
        "allow": Allowlist.parse(f"127.0.0.1:{site_port},a.test,b.test"),
        "connect_timeout_s": 2,
        "read_timeout_s": 2,
        "max_response_bytes": 64 * 1024,
        "user_agent": USER_AGENT,
        "resolver": named,
    }
    web = HttpxWebClient(**{**options, **changes})
    return FetchApi(MEMBER, web), web


async def test_json_is_parsed_and_other_bodies_come_back_as_text(site: Site) -> None:
    site.routes["/json"] = (200, "application/json; charset=utf-8", b'{"items": [1, 2]}', {})
    site.routes["/problem"] = (200, "application/problem+json", b'{"title": "x"}', {})
    site.routes["/text"] = (200, "text/plain; charset=latin-1", "caf\xe9".encode("latin-1"), {})
    api, web = fetcher(site.port)
    base = f"http://127.0.0.1:{site.port}"
    try:
        assert await api.fetch([f"{base}/json"]) == {"items": [1, 2]}
        assert await api.fetch([f"{base}/problem"]) == {"title": "x"}
        assert await api.fetch([f"{base}/text"]) == "café"
    finally:
        await web.close()
    assert site.received[0]["headers"]["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("mcpdo/")


async def test_a_non_2xx_status_is_an_error_with_the_status_and_an_excerpt(site: Site) -> None:
    api, web = fetcher(site.port)
    try:
        with pytest.raises(HttpStatusError, match=r"HTTP 404 from http://127\.0\.0\.1:\d+/items/itm_404: no such page"):
            await api.fetch([f"http://127.0.0.1:{site.port}/items/itm_404"])
    finally:
        await web.close()


async def test_method_headers_and_body_reach_the_server(site: Site) -> None:
    site.routes["/start"] = (201, "application/json", b'{"ok": true}', {})
    api, web = fetcher(site.port)
    try:
        answer = await api.fetch(
            [
                f"http://127.0.0.1:{site.port}/start",
                {"method": "post", "headers": {"content-type": "application/json"}, "body": '{"id": "dep_1"}'},
            ]
        )
    finally:
        await web.close()
    assert answer == {"ok": True}
    sent = site.received[0]
    assert (sent["method"], sent["body"], sent["headers"]["content-type"]) == (
        "POST",
        '{"id": "dep_1"}',
        "application/json",
    )


async def test_a_response_over_the_size_cap_is_its_own_error(site: Site) -> None:
    site.routes["/big"] = (200, "text/plain", b"x" * 5000, {})
    api, web = fetcher(site.port, max_response_bytes=1024)
    try:
        with pytest.raises(ResponseTooLarge, match=r"larger than 1024 bytes \(MCPDO_FETCH_MAX_BYTES"):
            await api.fetch([f"http://127.0.0.1:{site.port}/big"])
    finally:
        await web.close()


async def test_a_server_that_never_answers_is_a_read_time_out() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepted by the kernel, never answered
    port = int(silent.getsockname()[1])
    api, web = fetcher(port, read_timeout_s=0.3)
    try:
        with pytest.raises(FetchTimeout, match=r"sent nothing for 0\.3 s \(MCPDO_FETCH_TIMEOUT_MS"):
            await api.fetch([f"http://127.0.0.1:{port}/"])
    finally:
        await web.close()
        silent.close()


async def test_credentials_are_dropped_when_a_redirect_changes_host(site: Site) -> None:
    site.routes["/from"] = (302, "text/plain", b"", {"location": f"http://b.test:{site.port}/to"})
    site.routes["/to"] = (200, "application/json", b'"arrived"', {})
    api, web = fetcher(site.port)
    try:
        answer = await api.fetch(
            [f"http://a.test:{site.port}/from", {"headers": {"authorization": "Bearer t0k", "x-trace": "1"}}]
        )
    finally:
        await web.close()
    assert answer == "arrived"
    first, second = site.received
    assert first["headers"]["authorization"] == "Bearer t0k"
    assert "authorization" not in second["headers"] and second["headers"]["x-trace"] == "1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([42], "url must be a non-empty string"),
        (["http://a.test/", {"method": "BREW"}], "method must be one of"),
        (["http://a.test/", {"headers": {"x": "a\r\nb"}}], "header 'x' must be printable ASCII"),
        (["http://a.test/", {"headers": {"host": "evil"}}], "the header 'host' cannot be set: it frames the request"),
        (["http://a.test/", {"body": {"a": 1}}], "body must be a string"),
        (["http://a.test/", {"mode": "cors"}], "unknown option 'mode'"),
    ],
)
async def test_a_bad_request_is_an_error_naming_what_is_wrong(site: Site, args: list[Any], message: str) -> None:
    api, web = fetcher(site.port)
    try:
        with pytest.raises(InputError, match=message):
            await api.fetch(args)
    finally:
        await web.close()
    assert site.received == []
