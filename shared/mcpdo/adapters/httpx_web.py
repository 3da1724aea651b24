"""WebClient over httpx: `api.fetch` through the SSRF guard, `api.proxy` to configured base URLs.

The guard lives in the network backend, where httpcore opens each TCP connection: it resolves the host once,
asks `netguard.vet` for the address, and connects to exactly that address (TLS still verifies and sends SNI
for the URL's host name). So what is checked is what is connected to: no second DNS answer, no redirect and
no spelling of an address gets past it. Redirects are followed here, one hop at a time, each hop through the
same backend. Bodies are read as a stream and cut at the size cap (after decompression, so a small gzip bomb
is cut too).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from mcpdo.errors import FetchError, FetchRefused, FetchTimeout, InputError, ResponseTooLarge
from mcpdo.netguard import Address, Allowlist, check_scheme, literal_address, vet
from mcpdo.ports import HttpRequest, HttpResponse

MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
# Headers that carry a credential: not sent on to another host when a redirect leaves the first one.
_CREDENTIALS = ("authorization", "cookie", "proxy-authorization")

Resolver = Callable[[str, int], Awaitable[list[Address]]]


async def resolve(host: str, port: int) -> list[Address]:
    """Every address DNS gives for `host` (the system resolver, off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the SSRF rule allows."""

    def __init__(self, allow: Allowlist, resolver: Resolver) -> None:
        self._allow = allow
        self._resolve = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        literal = literal_address(host)
        try:
            addresses = [literal] if literal is not None else await self._resolve(host, port)
        except OSError:
            raise FetchError(f"api.fetch(): cannot resolve {host}") from None
        try:
            address = vet(host, port, addresses, self._allow)
        except InputError as exc:
            raise FetchRefused(exc.message) from None
        return await self._inner.connect_tcp(str(address), port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise FetchRefused("api.fetch(): unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class HttpxWebClient:
    """The deployment's outgoing HTTP: guarded for `api.fetch`, plain (no redirects) for `api.proxy`."""

    def __init__(
        self,
        *,
        allow: Allowlist,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_response_bytes: int,
        user_agent: str,
        resolver: Resolver = resolve,
    ) -> None:
        self._max_bytes = max_response_bytes
        self._connect_s = connect_timeout_s
        self._read_s = read_timeout_s
        timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        guarded = httpx.AsyncHTTPTransport(trust_env=False)
        # The transport's own pool, on the guarded backend (httpx has no public option for the backend).
        guarded._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(allow, resolver),
        )
        common: dict[str, Any] = {
            "timeout": timeout,
            "trust_env": False,
            "follow_redirects": False,
            "headers": {"user-agent": user_agent},
        }
        self._guarded = httpx.AsyncClient(transport=guarded, **common)
        self._plain = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(trust_env=False), **common)

    async def request(self, request: HttpRequest, *, guarded: bool) -> HttpResponse:
        client = self._guarded if guarded else self._plain
        method, url, headers, body = request.method, request.url, list(request.headers), request.body
        for hop in range(MAX_REDIRECTS + 1):
            _check_url(url)
            status, response_headers, data, final = await self._send(client, method, url, headers, body)
            location = dict((k.lower(), v) for k, v in response_headers).get("location")
            if not guarded or status not in REDIRECTS or location is None:
                return HttpResponse(status=status, headers=response_headers, body=data, url=final)
            if hop == MAX_REDIRECTS:
                break
            following = str(httpx.URL(final).join(location))
            if httpx.URL(following).host != httpx.URL(url).host:
                headers = [(k, v) for k, v in headers if k.lower() not in _CREDENTIALS]
            if status in (301, 302, 303) and method not in ("GET", "HEAD"):
                # What browsers do: the redirected request is a GET without the body.
                method, body = "GET", None
                headers = [(k, v) for k, v in headers if k.lower() not in ("content-type", "content-length")]
            url = following
        raise FetchRefused(f"api.fetch(): more than {MAX_REDIRECTS} redirects from {request.url[:200]}")

    async def _send(
        self, client: httpx.AsyncClient, method: str, url: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes, str]:
        try:
            async with client.stream(method, url, headers=headers, content=body) as response:
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > self._max_bytes:
                        raise ResponseTooLarge(
                            f"api.fetch(): the response from {_host(url)} is larger than {self._max_bytes} bytes "
                            "(MCPDO_FETCH_MAX_BYTES)"
                        )
                return response.status_code, tuple(response.headers.multi_items()), bytes(data), str(response.url)
        except httpx.ConnectTimeout:
            raise FetchTimeout(
                f"api.fetch(): connecting to {_host(url)} took longer than {self._connect_s:g} s "
                "(MCPDO_FETCH_CONNECT_TIMEOUT_MS)"
            ) from None
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
            raise FetchTimeout(
                f"api.fetch(): {_host(url)} sent nothing for {self._read_s:g} s (MCPDO_FETCH_TIMEOUT_MS)"
            ) from None
        except httpx.DecodingError:
            raise FetchError(f"api.fetch(): the response from {_host(url)} could not be decoded") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"api.fetch(): could not reach {_host(url)} ({type(exc).__name__})") from None

    async def close(self) -> None:
        await self._guarded.aclose()
        await self._plain.aclose()


def _check_url(url: str) -> None:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise FetchRefused(f"api.fetch(): not a valid URL: {url[:200]!r}") from None
    try:
        check_scheme(parsed.scheme, url)
    except InputError as exc:
        raise FetchRefused(exc.message) from None
    if not parsed.host:
        raise FetchRefused(f"api.fetch(): the URL names no host: {url[:200]!r}")


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host or url[:100]
    except httpx.InvalidURL:
        return url[:100]
