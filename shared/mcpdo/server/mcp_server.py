"""The MCP server (low-level `mcp.server.Server`) that lists and calls the one tool."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from mcpdo import __version__
from mcpdo.docs import DOC_NAMES, load_doc
from mcpdo.errors import Unauthorized
from mcpdo.identity import Identity
from mcpdo.operations import note
from mcpdo.tool import (
    DESCRIPTION,
    INPUT_SCHEMA,
    OUTPUT_SCHEMA,
    TOOL_NAME,
    TOOL_TITLE,
    DoTool,
    ToolResult,
    error_result,
)

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
DOCS_URI = "mcpdo://docs/"
DO_TOOL = types.Tool(
    name=TOOL_NAME,
    title=TOOL_TITLE,
    description=DESCRIPTION,
    input_schema=INPUT_SCHEMA,
    output_schema=OUTPUT_SCHEMA,
    # It writes (records, events, schedules) and reaches out (api.fetch, ai): neither read-only nor closed.
    annotations=types.ToolAnnotations(
        title=TOOL_TITLE, read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
    ),
)


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
        tools = [DO_TOOL]
        if with_noop:
            tools.append(types.Tool(name=NOOP_TOOL, description="Does nothing.", input_schema={"type": "object"}))
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if with_noop and params.name == NOOP_TOOL:
            return types.CallToolResult(content=[types.TextContent(type="text", text="null")])
        if params.name != TOOL_NAME:
            # A protocol error, as the spec has it for unknown tools (an error result is for a tool's own failures).
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool '{params.name}': this server has one tool, 'do'")
        try:
            identity = await resolve_identity(ctx)
        except Unauthorized as exc:
            # Where a transport checks the credential per call (stdio), a key revoked since is this call's error.
            return to_mcp(error_result(exc))
        started = time.perf_counter()
        result = await tool.call(params.arguments, identity)
        elapsed = (time.perf_counter() - started) * 1000
        note(
            "tool call",
            caller=identity.id or "anonymous",
            tenant=identity.tenant,
            authType=identity.auth_type,
            kind=result.kind,
            outcome="error" if result.is_error else "ok",
            errorKind=result.error_kind,
            durationMs=round(elapsed, 1),
        )
        if observe is not None:
            observe(ToolCall(identity, not result.is_error, result.error_kind, elapsed))
        return to_mcp(result)

    return Server(
        "mcpdo",
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_docs,
        on_read_resource=read_doc,
    )


async def list_docs(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    """The nine documentation pages, also as resources (`mcpdo://docs/db.md`), for clients that browse them."""
    return types.ListResourcesResult(
        resources=[
            types.Resource(
                uri=DOCS_URI + name,
                name=name,
                title=f"mcpdo: {name}",
                description=f"The `{name.removesuffix('.md')}` documentation (the same as script '{name}')",
                mime_type="text/markdown",
            )
            for name in DOC_NAMES
        ]
    )


async def read_doc(
    ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    uri = str(params.uri)
    name = uri.removeprefix(DOCS_URI) if uri.startswith(DOCS_URI) else None
    if name not in DOC_NAMES:
        # Invalid params: the spec's error for a resource that does not exist (-32002 is retired).
        raise MCPError(types.INVALID_PARAMS, f"Resource not found: {uri}; resources are {DOCS_URI}<name>.md")
    return types.ReadResourceResult(
        contents=[types.TextResourceContents(uri=uri, mime_type="text/markdown", text=load_doc(name))]
    )


def to_mcp(result: ToolResult) -> types.CallToolResult:
    """The transport-neutral tool result as the MCP SDK's type."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text) for text in result.texts],
        structured_content=result.structured,
        is_error=result.is_error,
    )
