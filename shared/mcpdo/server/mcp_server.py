"""The MCP server (low-level `mcp.server.Server`) that lists and calls the one tool."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext

from mcpdo import __version__
from mcpdo.errors import InputError
from mcpdo.identity import Identity
from mcpdo.tool import DESCRIPTION, INPUT_SCHEMA, TOOL_NAME, DoTool, ToolResult, error_result

IdentityResolver = Callable[[ServerRequestContext[Any, Any]], Awaitable[Identity]]


@dataclass(frozen=True)
class ToolCall:
    """What an operator sees of one `do` call: who, the outcome, the error's kind, how long. Never its text."""

    identity: Identity
    ok: bool
    error_kind: str | None
    duration_ms: float


ToolCallObserver = Callable[[ToolCall], None]

INSTRUCTIONS = (
    "One tool, `do`: write TypeScript against the SDK ($, db, ai, api, on, send, every, user). "
    "Call it with script 'do.md' for the full guide."
)


NOOP_TOOL = "noop"


def build_server(
    tool: DoTool,
    resolve_identity: IdentityResolver,
    *,
    with_noop: bool = False,
    observe: ToolCallObserver | None = None,
) -> Server[Any]:
    """A server whose every tools/call runs as the identity the transport resolved for that request.

    `with_noop` adds a tool that does nothing, the baseline the benchmarks compare `do` against; `observe`
    hears of every `do` call once it is answered (logs and metrics of the front door).
    """

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tools = [types.Tool(name=TOOL_NAME, description=DESCRIPTION, input_schema=INPUT_SCHEMA)]
        if with_noop:
            tools.append(types.Tool(name=NOOP_TOOL, description="Does nothing.", input_schema={"type": "object"}))
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if with_noop and params.name == NOOP_TOOL:
            return types.CallToolResult(content=[types.TextContent(type="text", text="null")])
        if params.name != TOOL_NAME:
            return to_mcp(error_result(InputError(f"Unknown tool '{params.name}': this server has one tool, 'do'")))
        identity = await resolve_identity(ctx)
        started = time.perf_counter()
        result = await tool.call(params.arguments, identity)
        if observe is not None:
            elapsed = (time.perf_counter() - started) * 1000
            observe(ToolCall(identity, not result.is_error, result.error_kind, elapsed))
        return to_mcp(result)

    return Server(
        "mcpdo", version=__version__, instructions=INSTRUCTIONS, on_list_tools=list_tools, on_call_tool=call_tool
    )


def to_mcp(result: ToolResult) -> types.CallToolResult:
    """The transport-neutral tool result as the MCP SDK's type."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text) for text in result.texts],
        structured_content=result.structured,
        is_error=result.is_error,
    )
