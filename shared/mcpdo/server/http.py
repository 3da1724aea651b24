"""The local HTTP front door: MCP over stateless Streamable HTTP with JSON responses, at /mcp."""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from mcp.server import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from mcpdo.auth import Authenticator
from mcpdo.errors import AuthUnavailable, Unauthorized
from mcpdo.identity import Identity
from mcpdo.ratelimit import RateLimits, rpc_id
from mcpdo.server.bearer import challenge, protected_resource_metadata
from mcpdo.server.mcp_server import build_server
from mcpdo.tool import DoTool

log = logging.getLogger(__name__)

IDENTITY_KEY = "mcpdo.identity"
MAX_BODY_BYTES = 8 * 1024 * 1024


def build_http_app(
    tool: DoTool,
    auth: Authenticator,
    *,
    public_url: str,
    limits: RateLimits,
    allowed_hosts: list[str] | None = None,
    trusted_proxies: tuple[str, ...] = (),
    authorization_servers: tuple[str, ...] = (),
    with_noop: bool = False,
) -> Starlette:
    """The ASGI app: POST /mcp runs MCP; GET /mcp is 405; bad credentials are 401, never anonymous.

    `allowed_hosts` None leaves Host unchecked (a deliberate wide bind behind a proxy); Origin, when sent,
    must then name the host the request came to. `trusted_proxies` are the addresses whose X-Forwarded-For
    is believed.
    """

    async def resolve_identity(ctx: ServerRequestContext[Any, Any]) -> Identity:
        request = ctx.request
        identity = getattr(request, "scope", {}).get(IDENTITY_KEY) if request is not None else None
        if isinstance(identity, Identity):
            return identity
        # Reached only if a transport did not carry our scope through; the header decides again.
        headers = getattr(request, "headers", None)
        return await auth.authenticate(headers.get("authorization") if headers is not None else None)

    server = build_server(tool, resolve_identity, with_noop=with_noop)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=allowed_hosts is not None,
        allowed_hosts=allowed_hosts or [],
        allowed_origins=[f"http://{host}" for host in allowed_hosts or []],
    )
    manager = StreamableHTTPSessionManager(
        app=server, stateless=True, json_response=True, security_settings=security, max_request_body_size=MAX_BODY_BYTES
    )
    resource_metadata = f"{public_url.rstrip('/')}/.well-known/oauth-protected-resource/mcp"

    edge = Edge(
        allowed_hosts=None if allowed_hosts is None else frozenset(host.lower() for host in allowed_hosts),
        proxies=tuple(ipaddress.ip_network(proxy, strict=False) for proxy in trusted_proxies),
    )
    endpoint = _McpEndpoint(manager, auth, resource_metadata, limits, edge)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def protected_resource(request: Request) -> Response:
        # RFC 9728: what MCP clients read after a 401: the OAuth issuer (when configured) that grants tokens
        # for this resource. API keys travel in the same Authorization header.
        return JSONResponse(protected_resource_metadata(f"{public_url.rstrip('/')}/mcp", authorization_servers))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(
        routes=[
            # Every method reaches the endpoint, so the Origin check comes first on each (then 405).
            Route("/mcp", endpoint),
            Route("/health", health),
            Route("/.well-known/oauth-protected-resource", protected_resource),
            Route("/.well-known/oauth-protected-resource/mcp", protected_resource),
        ],
        lifespan=lifespan,
    )


def _unauthorized(exc: Unauthorized, resource_metadata: str) -> Response:
    body, header = challenge(exc, resource_metadata)
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": header})


@dataclass(frozen=True)
class Edge:
    """The checks every request to /mcp passes before its credential is looked at, in this order: Host, Origin
    (on every method), method, Content-Type. A refused request never counts against anyone's quota."""

    allowed_hosts: frozenset[str] | None
    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def refusal(self, request: Request) -> Response | None:
        host = request.headers.get("host", "").lower()
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            return Response("Invalid Host header", status_code=421)
        origin = request.headers.get("origin")
        if origin is not None and not self._same_site(origin.lower(), host):
            return Response("Invalid Origin header", status_code=403)
        if request.method != "POST":
            # A GET would open an SSE stream that a stateless server never writes to: say so instead.
            return Response("Only POST is supported on this endpoint", status_code=405, headers={"Allow": "POST"})
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return Response("Invalid Content-Type header: expected application/json", status_code=400)
        return None

    def _same_site(self, origin: str, host: str) -> bool:
        """A browser page may call only from the server's own origin (its scheme is http here)."""
        hosts = self.allowed_hosts if self.allowed_hosts is not None else frozenset({host})
        return any(origin == f"{scheme}://{allowed}" for allowed in hosts for scheme in ("http", "https"))

    def source(self, scope: Scope) -> str:
        """The caller's address: the peer, or, when the peer is a trusted proxy, the nearest address in
        X-Forwarded-For that is not one (anything further left was written by the client, and is not read)."""
        peer = client_address(scope)
        if not self.proxies or not self._trusted(peer):
            return peer
        forwarded = [value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"]
        hops = [hop.strip() for line in forwarded for hop in line.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop if _is_address(hop) else peer
        return peer

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.proxies)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class _McpEndpoint:
    """A raw ASGI endpoint: authenticate, then hand the request to the MCP session manager."""

    def __init__(
        self,
        manager: StreamableHTTPSessionManager,
        auth: Authenticator,
        resource_metadata: str,
        limits: RateLimits,
        edge: Edge,
    ) -> None:
        self._manager = manager
        self._auth = auth
        self._resource_metadata = resource_metadata
        self._limits = limits
        self._edge = edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        refusal = self._edge.refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        try:
            identity = await self._auth.authenticate(request.headers.get("authorization"))
        except Unauthorized as exc:
            await _unauthorized(exc, self._resource_metadata)(scope, receive, send)
            return
        except AuthUnavailable as exc:
            await JSONResponse({"error": "temporarily_unavailable", "error_description": exc.message}, 503)(
                scope, receive, send
            )
            return
        if identity.is_anonymous:
            # Anonymous callers are told apart by where they call from: one rate limit and one sandbox share
            # per source address.
            identity = replace(identity, source=self._edge.source(scope))
        scope[IDENTITY_KEY] = identity
        if self._limits.enabled:
            body = await _read_body(receive)
            if body is None:
                await Response("Request body too large", status_code=413)(scope, receive, send)
                return
            limited = self._rate_limited(identity, body)
            if limited is not None:
                await limited(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self._manager.handle_request(scope, receive, send)

    def _rate_limited(self, identity: Identity, body: bytes) -> Response | None:
        """Only tool calls count: the handshake and listing are cheap and every client sends them."""
        message = _json_rpc(body)
        if message.get("method") != "tools/call":
            return None
        refusal = self._limits.check(identity)
        if refusal is None:
            return None
        return JSONResponse(
            {"jsonrpc": "2.0", "id": rpc_id(message.get("id")), "error": {"code": -32000, "message": refusal.message}},
            status_code=429,
            headers={"Retry-After": str(refusal.retry_after)},
        )


def client_address(scope: Scope) -> str:
    """The peer's address as the ASGI server saw it (uvicorn runs without proxy headers: see `Edge.source`)."""
    client = scope.get("client") or ("unknown", 0)
    return str(client[0])


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None past MAX_BODY_BYTES."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the already-read body out once, then defers to the original (disconnects)."""
    pending = [body]

    async def replayed() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replayed


def _json_rpc(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return message if isinstance(message, dict) else {}
