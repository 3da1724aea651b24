"""Tool calls per minute: per source address for anonymous callers, per key for authenticated ones."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import RunningServer, start_server, stop_server

HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("limited"), MCPDO_RATE_LIMIT_ANONYMOUS="3", MCPDO_RATE_LIMIT_AUTHENTICATED="5"
    )
    yield running
    stop_server(running)


def call(server: RunningServer, key: str | None = None, method: str = "tools/call") -> httpx.Response:
    headers = dict(HEADERS, **({"Authorization": f"Bearer {key}"} if key else {}))
    params = {"name": "do", "arguments": {"script": "1"}} if method == "tools/call" else {}
    return httpx.post(server.url, headers=headers, json={"jsonrpc": "2.0", "id": 7, "method": method, "params": params})


def test_anonymous_tool_calls_past_the_quota_get_429_with_retry_after(limited: RunningServer) -> None:
    answers = [call(limited) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["id"] == 7
    assert refused.json()["error"]["message"].startswith(
        "Rate limit exceeded: 3 tool calls per minute for anonymous callers from this address"
    )
    assert call(limited, method="tools/list").status_code == 200


def test_each_key_has_its_own_quota(limited: RunningServer) -> None:
    first, second = limited.new_key("quota-a"), limited.new_key("quota-b")
    assert [call(limited, first).status_code for _ in range(6)] == [200] * 5 + [429]
    assert call(limited, second).status_code == 200
    assert call(limited, second).json()["result"]["content"][0]["text"] == "1"
