"""WebClient over httpx: `api.fetch` through the SSRF guard, `api.proxy` to configured base URLs.

The guard lives in the network backend, where httpcore opens each TCP connection: it resolves the host once,
asks `netguard.vet` for the address, and connects to exactly that address (httpcore still sends the URL's
host name for TLS SNI and certificate checks, and httpx puts it in the Host header). So what is checked is
what is connected to: no second DNS answer, no redirect and no spelling of an address gets past it.
Redirects are followed here, one hop at a time, each hop through the same backend.

One client serves every caller of the deployment, so it keeps nothing from one request to the next that
could reach another caller: no cookie jar, no credentials across origins, and no connection limit one caller
could use up (each execution's share is bounded by `mcpdo.sdk.web.ExecutionWeb`). Bodies are read raw and
decoded here in bounded pieces, so neither the network bytes nor the decoded bytes pass the size cap by more
than one piece, however the body is compressed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import urllib.request
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from http.client import HTTPResponse
from http.cookiejar import Cookie, CookieJar
from typing import Any

import anyio
import httpcore
import httpx

from mcpdo.errors import FetchError, FetchRefused, FetchTimeout, ResponseTooLarge
from mcpdo.netguard import Address, Allowlist, check_scheme, literal_address, vet
from mcpdo.ports import HttpRequest, HttpResponse

MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
# One hop, connect to last byte, is bounded too: a server sending a byte now and then resets the read timeout.
HOP_TIMEOUT_FACTOR = 3
# Headers that carry a credential: not sent on when a redirect leaves the origin (scheme, host and port).
_CREDENTIALS = ("authorization", "cookie", "proxy-authorization")
# The codings this module decodes itself, in bounded pieces (httpx would decode a whole network chunk, and a
# chain of codings, before a cap could look); the request always asks for these only.
ACCEPT_ENCODING = "gzip, deflate"
_MAX_CODINGS = 3
_PIECE = 64 * 1024

Resolver = Callable[[str, int], Awaitable[list[Address]]]


async def resolve(host: str, port: int) -> list[Address]:
    """Every address DNS gives for `host` (the system resolver, off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the SSRF rule allows.

    httpcore calls `connect_tcp` with the URL's host; the TLS layer above it is started with that same name
    (`server_hostname`), so certificates are checked for the name while the socket goes to the vetted address.
    """

    def __init__(self, allow: Allowlist, resolver: Resolver, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._allow = allow
        self._resolve = resolver
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        literal = literal_address(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                # Resolving is part of connecting: the connect time-out covers it.
                with anyio.fail_after(timeout):
                    addresses = await self._resolve(host, port)
            except TimeoutError:
                raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
            except (OSError, UnicodeError):
                raise FetchError(f"api.fetch(): cannot resolve {host}") from None
        address = vet(host, port, addresses, self._allow)
        return await self._inner.connect_tcp(str(address), port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise FetchRefused("api.fetch(): unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _NoCookies(CookieJar):
    """A jar that keeps nothing: a cookie one caller's response sets must never go out with another's request
    (a script that wants a cookie sends the header itself)."""

    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def extract_cookies(self, response: HTTPResponse, request: urllib.request.Request) -> None:
        return None


class HttpxWebClient:
    """The deployment's outgoing HTTP: guarded for `api.fetch`, plain (no redirects) for `api.proxy`.

    `resolver` and `network` replace DNS and the sockets beneath the guard (tests); the guard is always on
    for guarded requests.
    """

    def __init__(
        self,
        *,
        allow: Allowlist,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_response_bytes: int,
        user_agent: str,
        resolver: Resolver = resolve,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._max_bytes = max_response_bytes
        self._connect_s = connect_timeout_s
        self._read_s = read_timeout_s
        # One TLS context for both clients: loading the system's certificates takes ~15 ms each time.
        tls = httpx.create_ssl_context(trust_env=False)
        self._guarded = self._client(user_agent, GuardedBackend(allow, resolver, network), tls)
        self._plain = self._client(user_agent, network, tls)

    def _client(
        self, user_agent: str, backend: httpcore.AsyncNetworkBackend | None, tls: ssl.SSLContext
    ) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(verify=tls, trust_env=False)
        # The transport's own pool rebuilt on our backend (httpx has no public option for the backend), with
        # no limit on connections: a limit would let one caller's slow requests hold every other caller's.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls,
            max_connections=None,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=backend,
        )
        return httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(self._read_s, connect=self._connect_s),
            trust_env=False,  # no proxies, certificates or credentials from the environment
            follow_redirects=False,
            cookies=_NoCookies(),
            headers={"user-agent": user_agent, "accept-encoding": ACCEPT_ENCODING},
        )

    async def request(self, request: HttpRequest, *, guarded: bool) -> HttpResponse:
        call = "api.fetch" if guarded else "api.proxy"
        client = self._guarded if guarded else self._plain
        method, url, body = request.method, request.url, request.body
        # The codings asked for are the ones decoded here (a script's own accept-encoding would not be).
        headers = [(name, value) for name, value in request.headers if name.lower() != "accept-encoding"]
        for hop in range(MAX_REDIRECTS + 1):
            current = _parse_url(call, url)
            status, response_headers, data, final = await self._send(call, client, method, url, headers, body)
            location = next((value for name, value in response_headers if name.lower() == "location"), None)
            if not guarded or status not in REDIRECTS or location is None:
                return HttpResponse(status=status, headers=response_headers, body=data, url=final)
            if hop == MAX_REDIRECTS:
                break
            try:
                following = httpx.URL(final).join(location)
            except (httpx.InvalidURL, UnicodeError):
                raise FetchRefused(
                    f"{call}(): {current.host} redirected to an invalid URL: {location[:200]!r}"
                ) from None
            if request.check_redirect is not None:
                request.check_redirect(following.host)
            if _origin(following) != _origin(current):
                headers = [(name, value) for name, value in headers if name.lower() not in _CREDENTIALS]
            if status in (301, 302, 303) and method not in ("GET", "HEAD"):
                # What browsers do: the redirected request is a GET without the body.
                method, body = "GET", None
                headers = [(name, value) for name, value in headers if name.lower() != "content-type"]
            url = str(following)
        raise FetchRefused(f"{call}(): more than {MAX_REDIRECTS} redirects from {request.url[:200]}")

    async def _send(
        self,
        call: str,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes, str]:
        host = _host(url)
        hop_s = self._connect_s + HOP_TIMEOUT_FACTOR * self._read_s
        try:
            with anyio.fail_after(hop_s):
                async with client.stream(method, url, headers=headers, content=body) as response:
                    codings = response.headers.get_list("content-encoding", split_commas=True)
                    data = await self._read(call, host, response.aiter_raw(), codings)
                    return response.status_code, tuple(response.headers.multi_items()), data, str(response.url)
        except TimeoutError:
            raise FetchTimeout(
                f"{call}(): {host} took longer than {hop_s:g} s in all to answer (MCPDO_FETCH_CONNECT_TIMEOUT_MS "
                f"+ {HOP_TIMEOUT_FACTOR} x MCPDO_FETCH_TIMEOUT_MS)"
            ) from None
        except httpx.ConnectTimeout:
            raise FetchTimeout(
                f"{call}(): connecting to {host} took longer than {self._connect_s:g} s "
                "(MCPDO_FETCH_CONNECT_TIMEOUT_MS)"
            ) from None
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
            raise FetchTimeout(
                f"{call}(): {host} sent nothing for {self._read_s:g} s (MCPDO_FETCH_TIMEOUT_MS)"
            ) from None
        except httpx.HTTPError as exc:
            # The type only: a library's message may quote the request.
            raise FetchError(f"{call}(): could not reach {host} ({type(exc).__name__})") from None

    async def _read(self, call: str, host: str, raw: AsyncIterator[bytes], codings: list[str]) -> bytes:
        """The decoded body, stopped as soon as it (or what crossed the network) passes the cap."""
        decoders = _decoders(call, host, codings)
        data = bytearray()
        received = 0

        def take(pieces: Iterator[bytes]) -> None:
            for piece in pieces:
                data.extend(piece)
                if len(data) > self._max_bytes:
                    raise self._too_large(call, host)

        try:
            async for chunk in raw:
                received += len(chunk)
                if received > self._max_bytes:
                    raise self._too_large(call, host)
                take(_through(decoders, 0, chunk))
            take(_finish(decoders))
        except zlib.error:
            encoding = ", ".join(codings)
            raise FetchError(f"{call}(): the response from {host} could not be decoded ({encoding})") from None
        return bytes(data)

    def _too_large(self, call: str, host: str) -> ResponseTooLarge:
        return ResponseTooLarge(
            f"{call}(): the response from {host} is larger than {self._max_bytes} bytes (MCPDO_FETCH_MAX_BYTES)"
        )

    async def close(self) -> None:
        await self._guarded.aclose()
        await self._plain.aclose()


class _Decoder:
    """One content coding (gzip or deflate), undone at most `_PIECE` bytes at a time."""

    def __init__(self, coding: str) -> None:
        gzip = coding in ("gzip", "x-gzip")
        self._z: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        self._head = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._z is None:
            # `deflate` should be zlib-wrapped, but servers also send it raw: the first two bytes tell.
            self._head += data
            if len(self._head) < 2:
                return
            first, second = self._head[0], self._head[1]
            wrapped = first & 0x0F == 8 and (first << 8 | second) % 31 == 0
            self._z = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            data, self._head = self._head, b""
        yield from self._drain(data)

    def finish(self) -> Iterator[bytes]:
        if self._z is None:
            if self._head:
                raise zlib.error("a one-byte deflate stream")
            return
        yield from self._drain(b"")

    def _drain(self, data: bytes) -> Iterator[bytes]:
        # Bytes after the end of the stream are ignored (as httpx does); the raw cap bounds how many arrive.
        while not self._z.eof:
            piece = self._z.decompress(data, _PIECE)
            if piece:
                yield piece
            data = self._z.unconsumed_tail
            # Done when the input is used up and zlib had room to spare (so holds no output back).
            if not data and len(piece) < _PIECE:
                return


def _decoders(call: str, host: str, codings: list[str]) -> list[_Decoder]:
    """Decoders in the order to apply them (the last coding applied comes off first)."""
    names = [coding.strip().lower() for coding in codings if coding.strip().lower() not in ("", "identity")]
    if len(names) > _MAX_CODINGS:
        raise FetchError(
            f"{call}(): the response from {host} is encoded {len(names)} times over; at most {_MAX_CODINGS}"
        )
    for name in names:
        if name not in ("gzip", "x-gzip", "deflate"):
            raise FetchError(
                f"{call}(): the response from {host} has the content encoding {name!r}, which is not decoded "
                f"(asked for: {ACCEPT_ENCODING})"
            )
    return [_Decoder(name) for name in reversed(names)]


def _through(decoders: list[_Decoder], index: int, data: bytes) -> Iterator[bytes]:
    if index == len(decoders):
        if data:
            yield data
        return
    for piece in decoders[index].feed(data):
        yield from _through(decoders, index + 1, piece)


def _finish(decoders: list[_Decoder]) -> Iterator[bytes]:
    for index, decoder in enumerate(decoders):
        for piece in decoder.finish():
            yield from _through(decoders, index + 1, piece)


def _parse_url(call: str, url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError):  # UnicodeError: a lone surrogate, a bad IDNA label
        raise FetchRefused(f"{call}(): not a valid URL: {url[:200]!r}") from None
    check_scheme(parsed.scheme, url)
    if not parsed.host:
        raise FetchRefused(f"{call}(): the URL names no host: {url[:200]!r}")
    return parsed


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host or url[:100]
    except (httpx.InvalidURL, UnicodeError):
        return url[:100]
