"""Fresh instances start small (6 MiB) and grow on demand: an anonymous memory bomb still stops at the
memory limit, and the next caller on the same runner gets a clean instance of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mcpdo.errors import LimitExceeded
from mcpdo.sandbox import ExecutionRequest, Limits, Sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def one_runner(anyio_backend: str) -> AsyncIterator[Sandbox]:
    sandbox = Sandbox(size=1)
    await sandbox.start()
    yield sandbox
    await sandbox.close()


async def _host(name: str, args: list[object]) -> object:
    return None


def _anonymous(code: str) -> ExecutionRequest:
    return ExecutionRequest(code=code, limits=Limits(), readonly=True, reuse_key=None)


async def test_a_bomb_on_a_small_fresh_instance_stops_at_the_limit_and_leaves_nothing(one_runner: Sandbox) -> None:
    bomb = (
        "globalThis.planted = 'attacker'\nObject.prototype.leak = 1\nconst a = []\nwhile (true) a.push('x'.repeat(1e6))"
    )
    with pytest.raises(LimitExceeded) as caught:
        await one_runner.execute(_anonymous(bomb), _host)
    assert caught.value.limit == "memory"
    victim = await one_runner.execute(
        _anonymous("[typeof globalThis.planted, ({}).leak === undefined, 'x'.repeat(1e6).length]"), _host
    )
    assert victim.value == ["undefined", True, 1_000_000]
