"""Synchronous helpers for polling a running server from tests: bounded waits and one-shot scripts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.server import RunningServer


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll `check` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if outcome:
            return outcome
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {outcome!r})")
        time.sleep(0.1)


def run_script(server: RunningServer, script: str) -> Any:
    """A script's value through the running server as its admin (None for `undefined`); errors fail."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "do", "arguments": {"script": script}},
    }
    response = httpx.post(
        server.url,
        json=body,
        timeout=30,
        headers={
            "Authorization": f"Bearer {server.admin_key}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-11-25",
        },
    )
    result = response.json()["result"]
    assert not result.get("isError"), result["content"][0]["text"]
    text = result["content"][0]["text"]
    return None if text == "undefined" else json.loads(text)


def outbox(server: RunningServer) -> list[dict[str, Any]]:
    """Everything the built-in mailer sent, through the CLI on the same state folder."""
    done = server.mcpdo("outbox", "list", "--limit", "500")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))
