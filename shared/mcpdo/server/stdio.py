"""MCP over stdio for clients that launch the server as a subprocess."""

from __future__ import annotations

from typing import Any

from mcp.server import ServerRequestContext
from mcp.server.stdio import stdio_server

from mcpdo.auth import Authenticator
from mcpdo.identity import Identity
from mcpdo.server.mcp_server import build_server
from mcpdo.tool import DoTool


async def serve_stdio(tool: DoTool, auth: Authenticator, authorization: str | None) -> None:
    """Serve until stdin closes; every call runs as the caller `authorization` names (MCPDO_API_KEY, or
    anonymous), checked again at each call, so a key revoked or expired meanwhile stops at once."""

    async def resolve_identity(ctx: ServerRequestContext[Any, Any]) -> Identity:
        return await auth.authenticate(authorization)

    server = build_server(tool, resolve_identity)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
