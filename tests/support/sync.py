"""Synchronous helpers for polling a running server from tests: bounded waits and one-shot scripts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from tests.support.server import RunningServer


class Endpoint(Protocol):
    """Where `do` is served and the admin key it takes: a local server, or a fake API Gateway in front of the
    MCP function."""

    url: str
    admin_key: str


def wait_for(check: Callable[[], Any], timeout: float = 20.0, step: Callable[[], int] | None = None) -> Any:
    """Poll `check` until it returns something truthy, or fail after `timeout` seconds. Between polls, `step`
    (when given) moves the work along and says how much it moved; a short sleep only when nothing did."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if outcome:
            return outcome
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {outcome!r})")
        if step is None or step() == 0:
            time.sleep(0.1 if step is None else 0.05)


def call_tool(server: Endpoint, key: str | None, arguments: dict[str, str]) -> tuple[bool, str]:
    """(is_error, first text item) of one `do` call (script and/or module) over HTTP, with `key` or anonymous."""
    result = tool_result(server, key, arguments)
    return bool(result.get("isError")), str(result["content"][0]["text"])


def tool_result(server: Endpoint, key: str | None, arguments: dict[str, str]) -> dict[str, Any]:
    """The whole `tools/call` result (content, structuredContent, isError) of one `do` call over HTTP."""
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-11-25",
    }
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "do", "arguments": arguments}}
    # ASCII escapes, as any JSON client may send them: text that is not valid Unicode still reaches the server.
    response = httpx.post(server.url, content=json.dumps(body), timeout=60, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def call_as(server: Endpoint, key: str | None, script: str) -> tuple[bool, str]:
    """(is_error, first text item) of one `do` script, with `key` or anonymous."""
    return call_tool(server, key, {"script": script})


def run_script(server: Endpoint, script: str, key: str | None = None) -> Any:
    """A script's value, as `key` (default: the server's admin); None for `undefined`; errors fail."""
    is_error, text = call_as(server, key or server.admin_key, script)
    assert not is_error, text
    return None if text == "undefined" else json.loads(text)


def outbox(server: RunningServer) -> list[dict[str, Any]]:
    """Everything the built-in mailer sent, through the CLI on the same state folder."""
    done = server.mcpdo("outbox", "list", "--limit", "500")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))
