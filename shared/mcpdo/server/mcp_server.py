"""The MCP server (low-level `mcp.server.Server`) that lists and calls the one tool."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext

from mcpdo import __version__
from mcpdo.errors import InputError
from mcpdo.identity import Identity
from mcpdo.tool import TOOL_NAME, DoTool, error_result, tool_definition

IdentityResolver = Callable[[ServerRequestContext[Any, Any]], Awaitable[Identity]]

INSTRUCTIONS = (
    "One tool, `do`: write TypeScript against the SDK ($, db, ai, api, on, send, every, user). "
    "Call it with script 'do.md' for the full guide."
)


def build_server(tool: DoTool, resolve_identity: IdentityResolver) -> Server[Any]:
    """A server whose every tools/call runs as the identity the transport resolved for that request."""

    async def list_tools(ctx: ServerRequestContext[Any, Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool_definition()])

    async def call_tool(ctx: ServerRequestContext[Any, Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name != TOOL_NAME:
            return error_result(InputError(f"Unknown tool '{params.name}': this server has one tool, 'do'"))
        identity = await resolve_identity(ctx)
        return await tool.call(params.arguments, identity)

    return Server("mcpdo", version=__version__, instructions=INSTRUCTIONS,
                  on_list_tools=list_tools, on_call_tool=call_tool)
