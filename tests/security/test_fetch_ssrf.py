"""`api.fetch` as an attacker uses it: every address class and spelling the SSRF rule refuses, schemes other
than http(s), redirects from an allowed host to a refused one, DNS answers with a refused address first. Each
is refused with an error naming the host and why, and a canary listener on loopback records no connection.

No test connects outside loopback: names resolve through the client's injected resolver, and private,
link-local or metadata addresses are refused by the guard before any connection is tried."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import pytest
from mcpdo.adapters.httpx_web import HttpxWebClient
from mcpdo.errors import AuthenticationRequired, FetchError, FetchRefused
from mcpdo.identity import Identity
from mcpdo.netguard import Address, Allowlist
from mcpdo.sdk.fetch import FetchApi

pytestmark = pytest.mark.anyio

MEMBER = Identity.for_roles(id="key_1", auth_type="apiKey", tenant="t1", roles=("member",))
# What the injected resolver answers: DNS names an attacker controls, pointing where they like.
DNS: dict[str, list[str]] = {
    "localhost": ["127.0.0.1"],
    "canary.attacker.example": ["127.0.0.1"],
    "ten.attacker.example": ["10.0.0.1"],
    "rfc1918-172.attacker.example": ["172.16.5.4"],
    "rfc1918-192.attacker.example": ["192.168.1.1"],
    "cgnat.attacker.example": ["100.64.0.1"],
    "metadata.attacker.example": ["169.254.169.254"],
    "metadata6.attacker.example": ["fd00:ec2::254"],
    "multicast.attacker.example": ["224.0.0.1"],
    "ula.attacker.example": ["fc00::1"],
    "unspecified.attacker.example": ["0.0.0.0"],
    "mapped.attacker.example": ["::ffff:127.0.0.1"],
    "rebind.attacker.example": ["127.0.0.1", "127.0.0.2"],
}


class Canary:
    """A TCP listener on loopback that records every connection made to it."""

    def __init__(self, address: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    listener = Canary()
    yield listener
    listener.close()


async def resolver(host: str, port: int) -> list[Address]:
    if host not in DNS:
        raise OSError(f"no such host {host}")
    return [ipaddress.ip_address(a) for a in DNS[host]]


class NoNetwork(httpcore.AsyncNetworkBackend):
    """The sockets beneath the guard, replaced: records every connection the guard lets through, makes none."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.attempts.append((host, port))
        raise httpcore.ConnectError("no network in this test")


def client(allow: str = "", network: httpcore.AsyncNetworkBackend | None = None) -> HttpxWebClient:
    return HttpxWebClient(
        allow=Allowlist.parse(allow),
        connect_timeout_s=2,
        read_timeout_s=2,
        max_response_bytes=1024 * 1024,
        user_agent="mcpdo-test",
        resolver=resolver,
        network=network,
    )


@pytest.fixture
async def fetch() -> AsyncIterator[FetchApi]:
    web = client()
    yield FetchApi(MEMBER, web)
    await web.close()


LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "0x7f000001",
    "2130706433",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "0.0.0.0",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::]",
    "localhost",
    "canary.attacker.example",
    "mapped.attacker.example",
    "unspecified.attacker.example",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
async def test_every_spelling_of_loopback_is_refused_and_nothing_connects(
    fetch: FetchApi, canary: Canary, host: str
) -> None:
    # Refused by the guard (naming the address class), or already by the URL parser for spellings it rejects.
    refused = r"refused to connect to .*(loopback|unspecified).*MCPDO_FETCH_ALLOW|not a valid URL"
    with pytest.raises(FetchRefused, match=refused) as caught:
        await fetch.fetch([f"http://{host}:{canary.port}/secret"])
    assert host.strip("[]") in str(caught.value)
    assert canary.connections == 0


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/", "private"),
        ("http://ten.attacker.example/", "private"),
        ("http://rfc1918-172.attacker.example/", "private"),
        ("http://rfc1918-192.attacker.example/", "private"),
        ("http://cgnat.attacker.example/", "carrier-grade NAT"),
        ("http://169.254.169.254/latest/meta-data/iam/", "link-local"),
        ("http://metadata.attacker.example/latest/meta-data/", "link-local"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "metadata"),
        ("http://metadata6.attacker.example/", "metadata"),
        ("http://multicast.attacker.example/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://ula.attacker.example/", "private"),
        ("http://[fc00::1]/", "private"),
        ("http://0xa9fea9fe/", "link-local"),
        ("http://2852039166/", "link-local"),
    ],
)
async def test_private_link_local_metadata_cgnat_and_multicast_addresses_are_refused_before_any_connection(
    url: str, reason: str
) -> None:
    network = NoNetwork()
    web = client(network=network)
    try:
        with pytest.raises(FetchRefused, match=f"refused to connect to .*{reason}") as caught:
            await FetchApi(MEMBER, web).fetch([url])
    finally:
        await web.close()
    assert host_of(url) in str(caught.value)
    assert network.attempts == []


def host_of(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0].strip("[]")


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "gopher://127.0.0.1:70/_x", "ftp://127.0.0.1/", "data:text/plain,hello", "javascript:1"],
)
async def test_schemes_other_than_http_and_https_are_refused(fetch: FetchApi, canary: Canary, url: str) -> None:
    with pytest.raises(FetchRefused, match="only http and https URLs"):
        await fetch.fetch([url.replace("127.0.0.1", f"127.0.0.1:{canary.port}")])
    assert canary.connections == 0


class Redirector:
    """An HTTP server on loopback answering every path with a redirect to `target(path)`."""

    def __init__(self, target: Any) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                self.send_response(302)
                self.send_header("location", target(self.path))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.hits = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{canary}/admin",
        "http://localhost:{canary}/admin",
        "http://[::ffff:127.0.0.1]:{canary}/",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{canary}/",
    ],
)
async def test_a_redirect_from_an_allowed_host_to_a_refused_one_is_refused(canary: Canary, target: str) -> None:
    location = target.format(canary=canary.port)
    redirector = Redirector(lambda path: location)
    web = client(allow=f"127.0.0.1:{redirector.port}")
    try:
        with pytest.raises(FetchRefused):
            await FetchApi(MEMBER, web).fetch([f"http://127.0.0.1:{redirector.port}/start"])
    finally:
        await web.close()
        redirector.close()
    assert redirector.hits == 1
    assert canary.connections == 0


async def test_more_than_five_redirects_are_refused() -> None:
    redirector = Redirector(lambda path: f"/hop{int(path.removeprefix('/hop') or 0) + 1}")
    web = client(allow=f"127.0.0.1:{redirector.port}")
    try:
        with pytest.raises(FetchRefused, match="more than 5 redirects"):
            await FetchApi(MEMBER, web).fetch([f"http://127.0.0.1:{redirector.port}/hop0"])
    finally:
        await web.close()
        redirector.close()
    assert redirector.hits == 6


async def test_the_connection_goes_to_the_address_that_was_checked_not_another_answer(canary: Canary) -> None:
    # The name resolves to a refused address first, then an allowed one; the allowed one serves on the same
    # port. Whatever DNS would say next, the connection is made to the vetted address.
    served = Canary("127.0.0.2", canary.port)
    web = client(allow="127.0.0.2/32")
    try:
        with pytest.raises(Exception):  # noqa: B017 - the served listener closes at once: any error is fine
            await FetchApi(MEMBER, web).fetch([f"http://rebind.attacker.example:{canary.port}/"])
    finally:
        await web.close()
        served.close()
    assert served.connections == 1
    assert canary.connections == 0


async def test_an_anonymous_caller_may_not_send_with_fetch_and_nothing_connects(canary: Canary) -> None:
    web = client()
    try:
        with pytest.raises(AuthenticationRequired):
            await FetchApi(Identity.anonymous(), web).fetch(
                [f"http://127.0.0.1:{canary.port}/", {"method": "POST", "body": "x"}]
            )
    finally:
        await web.close()
    assert canary.connections == 0


async def test_a_public_address_passes_the_guard_and_is_what_is_connected_to() -> None:
    # The other side of the table: the guard is not a blanket refusal. Nothing leaves the machine: the
    # sockets beneath the guard are replaced, and record the address the guard handed them.
    network = NoNetwork()
    web = client(network=network)
    try:
        with pytest.raises(FetchError, match=r"could not reach 93\.184\.216\.34"):
            await FetchApi(MEMBER, web).fetch(["http://93.184.216.34:8080/"])
    finally:
        await web.close()
    assert network.attempts == [("93.184.216.34", 8080)]
