"""No caller can starve another, through a real server: while twice the pool's size of anonymous
`while (true) {}` spinners are in flight, another key's `1 + 1` still answers within a second; the spinners'
callers get their timeout or the clear busy error (never a crash); the server serves normally afterwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from tests.security.test_event_storms import STORM, query
from tests.support.server import RunningServer, start_server, stop_server
from tests.support.sync import wait_for

pytestmark = pytest.mark.anyio

POOL = 2
SPINNERS = 2 * POOL
SPIN_MS = 5000
WAIT_MS = 2000
HOP_LIMIT = 4
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
BUSY = (
    "Too many concurrent executions for anonymous callers from this address: at most 1 at a time",
    "The sandbox is busy with anonymous executions: at most 1 at a time for all anonymous callers",
    "The sandbox is busy: no runner became free within 2000 ms",
)


@pytest.fixture(scope="module")
def fair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("fair"),
        MCPDO_SANDBOX_POOL_SIZE=str(POOL),
        MCPDO_ANONYMOUS_TIMEOUT_MS=str(SPIN_MS),
        MCPDO_SANDBOX_WAIT_MS=str(WAIT_MS),
        MCPDO_EVENT_HOP_LIMIT=str(HOP_LIMIT),
        # The spinners "from many addresses" come through a proxy on loopback that names each one.
        MCPDO_TRUSTED_PROXIES="127.0.0.1",
    )
    yield running
    stop_server(running)


async def call(
    http: httpx.AsyncClient, server: RunningServer, script: str, *, key: str | None = None, source: str | None = None
) -> dict[str, Any]:
    """One `tools/call` of `do`; `source` poses as another address (the server trusts its loopback proxy)."""
    headers = dict(HEADERS)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if source:
        headers["X-Forwarded-For"] = source
    response = await http.post(
        server.url,
        headers=headers,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "do", "arguments": {"script": script}},
        },
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def text(result: dict[str, Any]) -> str:
    return str(result["content"][0]["text"])


async def spin_while_a_key_calls(
    server: RunningServer, key: str, sources: list[str | None]
) -> tuple[list[float], list[dict[str, Any]]]:
    """Start the spinners, then call `1 + 1` as the key until every spinner has answered."""
    spinners: list[dict[str, Any]] = []
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=30) as http:

        async def spin(source: str | None) -> None:
            spinners.append(await call(http, server, "while (true) {}", source=source))

        with anyio.fail_after(SPIN_MS / 1000 + 20):
            async with anyio.create_task_group() as group:
                for source in sources:
                    group.start_soon(spin, source)
                while len(spinners) < len(sources):
                    started = time.monotonic()
                    result = await call(http, server, "1 + 1", key=key)
                    latencies.append(time.monotonic() - started)
                    assert not result.get("isError"), text(result)
                    assert json.loads(text(result)) == 2
                    await anyio.sleep(0.1)
    return latencies, spinners


def assert_timed_out_or_busy(spinners: list[dict[str, Any]]) -> None:
    texts = [text(s) for s in spinners]
    assert all(s.get("isError") for s in spinners), texts
    assert all(t == f"Execution timeout after {SPIN_MS}ms" or t.startswith(BUSY) for t in texts), texts
    assert not any("crash" in t for t in texts), texts
    assert f"Execution timeout after {SPIN_MS}ms" in texts


async def assert_serves_normally(server: RunningServer, key: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        for who in ({"key": key}, {}, {"source": "198.51.100.200"}):
            result = await call(http, server, "[1, 2].map(n => n * 21)[1]", **who)
            assert not result.get("isError"), text(result)
            assert json.loads(text(result)) == 42


# From one address, the per-address cap refuses all but one spinner; from many, the anonymous share does.
SPINNER_SOURCES: dict[str, tuple[list[str | None], str]] = {
    "one address": ([None] * SPINNERS, BUSY[0]),
    "many addresses": ([f"203.0.113.{n}" for n in range(1, SPINNERS + 1)], BUSY[1]),
}


@pytest.mark.parametrize("origin", list(SPINNER_SOURCES))
async def test_a_key_is_answered_within_a_second_while_anonymous_spinners_are_in_flight(
    fair: RunningServer, origin: str
) -> None:
    sources, refusal = SPINNER_SOURCES[origin]
    key = fair.new_key(f"patient-{origin.replace(' ', '-')}")
    latencies, spinners = await spin_while_a_key_calls(fair, key, sources)
    assert len(latencies) >= 5
    assert max(latencies) < 1.0, latencies
    assert_timed_out_or_busy(spinners)
    busy = [text(s) for s in spinners if text(s).startswith(BUSY)]
    assert len(busy) == SPINNERS - 1
    assert all(t.startswith(refusal) for t in busy), busy
    await assert_serves_normally(fair, key)


async def test_a_key_is_answered_within_a_second_while_spinners_and_an_event_storm_run_and_the_storm_ends(
    fair: RunningServer,
) -> None:
    key = fair.new_key("patient-storm")
    stormer = fair.new_key("stormer", "--tenant", "stormy")
    async with httpx.AsyncClient(timeout=30) as http:
        started = await http.post(
            fair.url,
            headers={**HEADERS, "Authorization": f"Bearer {stormer}"},
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {
                    "name": "do",
                    "arguments": {"module": STORM, "script": "await send($.Storm.tick, { n: 0 })"},
                },
            },
        )
        assert not started.json()["result"].get("isError"), started.text
    latencies, spinners = await spin_while_a_key_calls(fair, key, [None] * SPINNERS)
    assert max(latencies) < 1.0, latencies
    assert_timed_out_or_busy(spinners)

    def storm_over() -> bool:
        rows = query(
            fair, "SELECT COUNT(*) FROM deliveries WHERE tenant = 'stormy' AND status IN ('pending', 'running')"
        )
        return int(rows[0][0]) == 0

    wait_for(storm_over, timeout=60)
    dead = query(fair, "SELECT last_error FROM deliveries WHERE tenant = 'stormy' AND status = 'dead'")
    assert len(dead) == 2 ** (HOP_LIMIT + 1)
    assert all(f"past the hop limit of {HOP_LIMIT}" in row[0] for row in dead)
    await assert_serves_normally(fair, key)
