"""Leases contract: one owner at a time, renewable by its owner, free again on release or expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from mcpdo.adapters.memory import MemoryLeases
from mcpdo.adapters.sqlite_leases import SqliteLeases
from mcpdo.ports import Leases

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


LEASE_STORES: dict[str, Callable[[Path, Clock], Leases]] = {
    "memory": lambda path, clock: MemoryLeases(clock=clock),
    "sqlite": lambda path, clock: SqliteLeases(path / "leases.db", clock=clock),
}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=sorted(LEASE_STORES))
async def leases(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock, anyio_backend: str
) -> AsyncIterator[Leases]:
    store = LEASE_STORES[request.param](tmp_path, clock)
    try:
        yield store
    finally:
        await store.close()


async def test_only_one_owner_holds_a_lease_until_it_expires(leases: Leases, clock: Clock) -> None:
    assert await leases.acquire("worker", "a", 10) is True
    assert await leases.acquire("worker", "b", 10) is False
    assert await leases.holder("worker") == "a"
    clock.now += 10.5
    assert await leases.holder("worker") is None
    assert await leases.acquire("worker", "b", 10) is True
    assert await leases.holder("worker") == "b"


async def test_the_owner_renews_its_lease_and_others_stay_out(leases: Leases, clock: Clock) -> None:
    assert await leases.acquire("worker", "a", 10)
    clock.now += 8
    assert await leases.acquire("worker", "a", 10)
    clock.now += 8
    assert await leases.acquire("worker", "b", 10) is False
    assert await leases.holder("worker") == "a"


async def test_a_released_lease_is_free_at_once_and_only_its_owner_can_release_it(leases: Leases) -> None:
    assert await leases.acquire("worker", "a", 10)
    await leases.release("worker", "b")
    assert await leases.holder("worker") == "a"
    await leases.release("worker", "a")
    assert await leases.holder("worker") is None
    assert await leases.acquire("worker", "b", 10)


async def test_leases_of_different_names_are_independent(leases: Leases) -> None:
    assert await leases.acquire("worker", "a", 10)
    assert await leases.acquire("other", "b", 10)
    assert (await leases.holder("worker"), await leases.holder("other")) == ("a", "b")
