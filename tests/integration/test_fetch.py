"""`api.fetch` against allow-listed loopback servers: bodies parsed by content type (and decoded when
compressed), non-2xx errors with status and excerpt, the size cap, the connect time-out and the read time-out
each with its own error, the product's User-Agent, methods, headers and bodies as sent, redirects as browsers
follow them, credentials dropped when a redirect changes host, anonymous callers limited to GET."""

from __future__ import annotations

import gzip
import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from mcpdo.adapters.httpx_web import HttpxWebClient
from mcpdo.bootstrap import USER_AGENT
from mcpdo.errors import AuthenticationRequired, FetchTimeout, HttpStatusError, InputError, ResponseTooLarge
from mcpdo.identity import Identity
from mcpdo.netguard import Address, Allowlist
from mcpdo.sdk.fetch import FetchApi

from tests.support.fake_web import FakeWeb, Raw, fake_web

pytestmark = pytest.mark.anyio

MEMBER = Identity.for_roles(id="key_1", auth_type="apiKey", tenant="t1", roles=("member",))


@pytest.fixture
def site() -> Iterator[FakeWeb]:
    with fake_web() as web:
        yield web


async def named(host: str, port: int) -> list[Address]:
    """`a.test` and `b.test` are two names of loopback (allow-listed by name below)."""
    return [ipaddress.ip_address("127.0.0.1")]


def site_port(site: FakeWeb) -> int:
    return int(site.host_port.rsplit(":", 1)[1])


def fetcher(port: int, **changes: Any) -> tuple[FetchApi, HttpxWebClient]:
    options: dict[str, Any] = {
        "allow": Allowlist.parse(f"127.0.0.1:{port},a.test,b.test"),
        "connect_timeout_s": 2,
        "read_timeout_s": 2,
        "max_response_bytes": 64 * 1024,
        "user_agent": USER_AGENT,
        "resolver": named,
    }
    web = HttpxWebClient(**{**options, **changes})
    return FetchApi(MEMBER, web), web


async def test_json_is_parsed_and_other_bodies_come_back_as_text(site: FakeWeb) -> None:
    site.routes["/json"] = (200, Raw("application/json; charset=utf-8", b'{"items": [1, 2]}'))
    site.routes["/problem"] = (200, Raw("application/problem+json", b'{"title": "x"}'))
    site.routes["/text"] = (200, Raw("text/plain; charset=latin-1", "caf\xe9".encode("latin-1")))
    api, web = fetcher(site_port(site))
    base = f"http://127.0.0.1:{site_port(site)}"
    try:
        assert await api.fetch([f"{base}/json"]) == {"items": [1, 2]}
        assert await api.fetch([f"{base}/problem"]) == {"title": "x"}
        assert await api.fetch([f"{base}/text"]) == "café"
    finally:
        await web.close()
    assert site.received[0]["headers"]["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("mcpdo/")


async def test_a_non_2xx_status_is_an_error_with_the_status_and_an_excerpt(site: FakeWeb) -> None:
    api, web = fetcher(site_port(site))
    try:
        with pytest.raises(HttpStatusError, match=r"HTTP 404 from http://127\.0\.0\.1:\d+/items/itm_404: no such page"):
            await api.fetch([f"http://127.0.0.1:{site_port(site)}/items/itm_404"])
    finally:
        await web.close()


async def test_method_headers_and_body_reach_the_server(site: FakeWeb) -> None:
    site.routes["/start"] = (201, Raw("application/json", b'{"ok": true}'))
    api, web = fetcher(site_port(site))
    try:
        answer = await api.fetch(
            [
                f"http://127.0.0.1:{site_port(site)}/start",
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


async def test_a_response_over_the_size_cap_is_its_own_error(site: FakeWeb) -> None:
    site.routes["/big"] = (200, Raw("text/plain", b"x" * (5 * 1024 * 1024)))  # 5 MB against a 1 KB cap
    api, web = fetcher(site_port(site), max_response_bytes=1024)
    try:
        with pytest.raises(ResponseTooLarge, match=r"larger than 1024 bytes \(MCPDO_FETCH_MAX_BYTES"):
            await api.fetch([f"http://127.0.0.1:{site_port(site)}/big"])
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


async def test_credentials_are_dropped_when_a_redirect_changes_host(site: FakeWeb) -> None:
    site.routes["/from"] = (302, Raw("text/plain", b"", {"location": f"http://b.test:{site_port(site)}/to"}))
    site.routes["/to"] = (200, Raw("application/json", b'"arrived"'))
    api, web = fetcher(site_port(site))
    try:
        answer = await api.fetch(
            [f"http://a.test:{site_port(site)}/from", {"headers": {"authorization": "Bearer t0k", "x-trace": "1"}}]
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
async def test_a_bad_request_is_an_error_naming_what_is_wrong(site: FakeWeb, args: list[Any], message: str) -> None:
    api, web = fetcher(site_port(site))
    try:
        with pytest.raises(InputError, match=message):
            await api.fetch(args)
    finally:
        await web.close()
    assert site.received == []


@contextmanager
def full_backlog() -> Iterator[int]:
    """A loopback port whose accept queue is full: the kernel drops further SYNs, so connecting to it hangs
    the way connecting to a host that drops packets does (no address outside loopback is needed)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):
            filler = socket.socket()
            filler.settimeout(0.5)
            fillers.append(filler)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break  # this one hung: the queue is full
        else:
            pytest.skip("this kernel completes connections past a full accept queue")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


async def test_a_host_that_never_completes_the_connection_is_a_connect_time_out() -> None:
    with full_backlog() as port:
        api, web = fetcher(port, connect_timeout_s=0.3)
        try:
            with pytest.raises(
                FetchTimeout,
                match=r"connecting to 127\.0\.0\.1 took longer than 0\.3 s \(MCPDO_FETCH_CONNECT_TIMEOUT_MS",
            ):
                await api.fetch([f"http://127.0.0.1:{port}/"])
        finally:
            await web.close()


async def test_a_compressed_body_is_decoded_and_only_the_codings_decoded_here_are_asked_for(site: FakeWeb) -> None:
    packed = gzip.compress(b'{"packed": true}')
    site.routes["/gz"] = (200, Raw("application/json", packed, {"content-encoding": "gzip"}))
    api, web = fetcher(site_port(site))
    try:
        answer = await api.fetch([f"http://127.0.0.1:{site_port(site)}/gz", {"headers": {"accept-encoding": "br"}}])
    finally:
        await web.close()
    assert answer == {"packed": True}
    assert site.received[0]["headers"]["accept-encoding"] == "gzip, deflate"


async def test_a_script_may_name_its_own_user_agent(site: FakeWeb) -> None:
    site.routes["/ua"] = (200, "ok")
    api, web = fetcher(site_port(site))
    try:
        await api.fetch([f"http://127.0.0.1:{site_port(site)}/ua", {"headers": {"User-Agent": "inventory-sync/2"}}])
    finally:
        await web.close()
    assert site.received[0]["headers"]["user-agent"] == "inventory-sync/2"


async def test_a_303_after_a_post_is_followed_with_a_get_and_a_307_keeps_the_method_and_body(site: FakeWeb) -> None:
    site.routes["/submit"] = (303, Raw("text/plain", b"", {"location": "/done"}))
    site.routes["/done"] = (200, "done")
    site.routes["/move"] = (307, Raw("text/plain", b"", {"location": "/moved"}))
    site.routes["/moved"] = (200, "moved")
    api, web = fetcher(site_port(site))
    base = f"http://127.0.0.1:{site_port(site)}"
    post = {"method": "POST", "headers": {"content-type": "text/plain"}, "body": "payload"}
    try:
        assert await api.fetch([f"{base}/submit", post]) == "done"
        assert await api.fetch([f"{base}/move", post]) == "moved"
    finally:
        await web.close()
    methods = [(sent["method"], sent["path"], sent["body"]) for sent in site.received]
    assert methods == [
        ("POST", "/submit", "payload"),
        ("GET", "/done", ""),
        ("POST", "/move", "payload"),
        ("POST", "/moved", "payload"),
    ]
    assert "content-type" not in site.received[1]["headers"]


async def test_an_anonymous_caller_may_get_but_not_post(site: FakeWeb) -> None:
    site.routes["/public"] = (200, {"open": True})
    web = HttpxWebClient(
        allow=Allowlist.parse(f"127.0.0.1:{site_port(site)}"),
        connect_timeout_s=2,
        read_timeout_s=2,
        max_response_bytes=64 * 1024,
        user_agent=USER_AGENT,
    )
    api = FetchApi(Identity.anonymous(), web)
    url = f"http://127.0.0.1:{site_port(site)}/public"
    try:
        assert await api.fetch([url]) == {"open": True}
        with pytest.raises(AuthenticationRequired):
            await api.fetch([url, {"method": "POST", "body": "{}"}])
        with pytest.raises(AuthenticationRequired):
            await api.fetch([url, {"method": "delete"}])
    finally:
        await web.close()
    assert [sent["method"] for sent in site.received] == ["GET"]
