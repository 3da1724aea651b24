"""The Lambda front door: API Gateway HTTP API (payload v2) events to the same MCP server, on the SDK's
request kernel (`serve_one`, one JSON-RPC request per invocation), never ASGI.

Each request is routed like the SDK's stateless HTTP transport does: a `MCP-Protocol-Version` header naming
a 2026-era revision takes the per-request-envelope path (validated by the SDK's own ladder); anything else
the handshake generation on a born-ready connection. Answers are JSON. The checks of the local front door
hold here too, in the same order: Host (API Gateway's own host, from settings), Origin, method, Content-Type,
body size, then the credential (a bad key is a 401 with `WWW-Authenticate`, never an anonymous call).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.connection import Connection
from mcp.server.runner import modern_error_data, serve_one
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    classify_inbound_request,
)
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import DEFAULT_NEGOTIATED_VERSION
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from mcpdo.auth import Authenticator
from mcpdo.errors import AuthUnavailable, Unauthorized
from mcpdo.identity import Identity
from mcpdo.ratelimit import RateLimits, rpc_id
from mcpdo.server.bearer import challenge, protected_resource_metadata
from mcpdo.server.mcp_server import ToolCallObserver, build_server
from mcpdo.tool import DoTool

# Lambda's synchronous payload limit; API Gateway itself allows 10 MB.
MAX_BODY_BYTES = 6 * 1024 * 1024

Response = dict[str, Any]


@dataclass(frozen=True)
class LambdaRequest:
    """What a tool handler learns about its request: the caller and the headers as delivered."""

    identity: Identity
    headers: Mapping[str, str]


@dataclass
class _DispatchContext:
    """The SDK's `DispatchContext` for one request and one JSON reply: no back channel, no stream."""

    transport: TransportContext
    request_id: types.RequestId
    message_metadata: ServerMessageMetadata
    progress_token: types.ProgressToken | None = None
    cancel_requested: anyio.Event = field(default_factory=anyio.Event)
    can_send_request: bool = False

    async def send_raw_request(self, method: str, params: Mapping[str, Any] | None, opts: Any = None) -> dict[str, Any]:
        from mcp.shared.exceptions import NoBackChannelError

        raise NoBackChannelError(method)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: Any = None) -> None:
        return None  # a JSON reply has nowhere to carry notifications

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        return None


class LambdaFrontDoor:
    """Answers one API Gateway v2 event with an API Gateway v2 response."""

    def __init__(
        self,
        tool: DoTool,
        auth: Authenticator,
        *,
        allowed_hosts: tuple[str, ...],
        limits: RateLimits | None = None,
        observe: ToolCallObserver | None = None,
        public_url: str | None = None,
        authorization_servers: tuple[str, ...] = (),
    ) -> None:
        self._auth = auth
        # Where clients reach the server: a custom domain in front of API Gateway, else the host they used.
        self._public_url = public_url
        self._authorization_servers = authorization_servers
        # Counted per execution environment: API Gateway's stage throttling (template.yaml) bounds the whole.
        self._limits = limits
        # Empty means unchecked: LambdaRuntime refuses to start so, and the template sets API Gateway's host.
        self._allowed_hosts = {host.lower() for host in allowed_hosts}
        self._server: Server[Any] = build_server(tool, _identity_of_request, observe=observe)

    async def handle(self, event: Mapping[str, Any]) -> Response:
        """Route one event: /health, the RFC 9728 metadata, or MCP at /mcp."""
        http = event.get("requestContext", {}).get("http", {})
        method = str(http.get("method", "GET")).upper()
        path = str(event.get("rawPath") or http.get("path") or "/")
        headers = _headers(event)
        host = headers.get("host") or str(event.get("requestContext", {}).get("domainName", ""))
        if self._allowed_hosts and host.lower() not in self._allowed_hosts:
            return _text(421, "Invalid Host header")
        if path == "/health":
            return _json(200, {"status": "ok"})
        if path.startswith("/.well-known/oauth-protected-resource"):
            return _json(200, protected_resource_metadata(self._url(host) + "/mcp", self._authorization_servers))
        if path.rstrip("/") != "/mcp":
            return _text(404, "Not found")
        return await self._mcp(method, headers, event, host)

    async def _mcp(self, method: str, headers: Mapping[str, str], event: Mapping[str, Any], host: str) -> Response:
        origin = headers.get("origin")
        if origin is not None and origin.lower() != f"https://{host.lower()}":
            return _text(403, "Invalid Origin header")
        if method != "POST":
            # A GET would open an SSE stream that a stateless server never writes to: say so instead.
            return _text(405, "Only POST is supported on this endpoint", {"Allow": "POST"})
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return _text(400, "Invalid Content-Type header")
        body = _body(event)
        if body is None:
            return _text(413, "Request body too large")
        try:
            identity = await self._auth.authenticate(headers.get("authorization"))
        except Unauthorized as exc:
            return _unauthorized(exc, self._url(host))
        except AuthUnavailable as exc:
            return _json(503, {"error": "temporarily_unavailable", "error_description": exc.message})
        if identity.is_anonymous:
            # API Gateway's own view of the peer, never a client-sent header such as X-Forwarded-For.
            source = event.get("requestContext", {}).get("http", {}).get("sourceIp")
            identity = replace(identity, source=str(source or "unknown"))
        refusal = self._rate_limited(identity, body)
        if refusal is not None:
            return refusal
        return await self._json_rpc(body, headers, LambdaRequest(identity, headers))

    def _url(self, host: str) -> str:
        return self._public_url or f"https://{host}"

    def _rate_limited(self, identity: Identity, body: bytes) -> Response | None:
        """Only tool calls count: the handshake and listings are cheap and every client sends them."""
        if self._limits is None or not self._limits.enabled:
            return None
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            return None  # answered as a parse error, uncounted
        if not isinstance(message, dict) or message.get("method") != "tools/call":
            return None
        refusal = self._limits.check(identity)
        if refusal is None:
            return None
        request_id = rpc_id(message.get("id"))
        response = _json(
            429, {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32000, "message": refusal.message}}
        )
        response["headers"]["Retry-After"] = str(refusal.retry_after)
        return response

    async def _json_rpc(self, body: bytes, headers: Mapping[str, str], request: LambdaRequest) -> Response:
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            return _rpc_error(None, types.PARSE_ERROR, "Parse error")
        if isinstance(decoded, dict) and "method" in decoded and "id" not in decoded:
            return {"statusCode": 202, "headers": {}, "body": ""}  # a notification: nothing to answer
        try:
            message = types.JSONRPCRequest.model_validate(decoded)
        except ValueError:
            return _rpc_error(None, types.INVALID_REQUEST, "Body must be a single JSON-RPC request or notification")
        connection = self._connection(decoded, headers)
        if isinstance(connection, InboundLadderRejection):
            return _rpc_error(message.id, connection.code, connection.message, connection.data)
        context = _DispatchContext(
            transport=TransportContext(kind="streamable-http", can_send_request=False, headers=headers),
            request_id=message.id,
            message_metadata=ServerMessageMetadata(request_context=request),
        )
        try:
            result = await serve_one(
                self._server, context, message.method, message.params, connection=connection, lifespan_state={}
            )
        except Exception as exc:
            error = modern_error_data(exc)
            return _rpc_error(message.id, error.code, error.message, error.data)
        return _json(200, {"jsonrpc": "2.0", "id": message.id, "result": result})

    def _connection(self, decoded: Any, headers: Mapping[str, str]) -> Connection | InboundLadderRejection:
        """The connection one request runs on, by protocol generation (as the SDK's stateless transport does)."""
        version = headers.get(MCP_PROTOCOL_VERSION_HEADER)
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            verdict = classify_inbound_request(decoded, headers=dict(headers))
            if isinstance(verdict, InboundLadderRejection):
                return verdict
            return Connection.from_envelope(verdict.protocol_version, verdict.client_info, verdict.client_capabilities)
        # The handshake generation, stateless: born ready, seeded by the header (or the spec's default).
        return Connection.from_envelope(version or DEFAULT_NEGOTIATED_VERSION, None, None)


async def _identity_of_request(ctx: ServerRequestContext[Any, Any]) -> Identity:
    request = ctx.request
    if not isinstance(request, LambdaRequest):
        raise RuntimeError("a tool call reached the Lambda server without its request")
    return request.identity


def _headers(event: Mapping[str, Any]) -> dict[str, str]:
    """Header names lowercased, values of names that differ only in case joined with commas in event order,
    as API Gateway joins repeated headers: `Authorization` and `authorization` never let the last one win."""
    headers: dict[str, str] = {}
    for name, value in (event.get("headers") or {}).items():
        key = str(name).lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else str(value)
    return headers


def _body(event: Mapping[str, Any]) -> bytes | None:
    """The raw body (base64 as API Gateway may encode it), or None past MAX_BODY_BYTES."""
    raw = event.get("body") or ""
    try:
        body = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else str(raw).encode("utf-8")
    except (binascii.Error, ValueError):
        body = b"\x00"  # undecodable base64: a body no JSON parser accepts, answered as a parse error
    return None if len(body) > MAX_BODY_BYTES else body


def _unauthorized(exc: Unauthorized, url: str) -> Response:
    body, header = challenge(exc, f"{url}/.well-known/oauth-protected-resource/mcp")
    response = _json(401, body)
    response["headers"]["WWW-Authenticate"] = header
    return response


def _rpc_error(request_id: Any, code: int, message: str, data: Any = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return _json(ERROR_CODE_HTTP_STATUS.get(code, 200), {"jsonrpc": "2.0", "id": request_id, "error": error})


def _json(status: int, body: Any) -> Response:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def _text(status: int, text: str, headers: Mapping[str, str] | None = None) -> Response:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "text/plain; charset=utf-8", **(headers or {})},
        "body": text,
        "isBase64Encoded": False,
    }
