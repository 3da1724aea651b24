"""EntityStore adapters under contract: each param builds a fresh, empty store for one test.

A new adapter joins by adding a factory to `STORE_FACTORIES`; it must then pass the whole suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from mcpdo.adapters.sqlite_store import SqliteEntityStore
from mcpdo.ports import EntityStore


def _sqlite(tmp_path: Path) -> EntityStore:
    return SqliteEntityStore(tmp_path / "entities.db")


STORE_FACTORIES: dict[str, Callable[[Path], EntityStore]] = {
    "sqlite": _sqlite,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str) -> AsyncIterator[EntityStore]:
    """A fresh store of each adapter kind."""
    entity_store = STORE_FACTORIES[request.param](tmp_path)
    try:
        yield entity_store
    finally:
        await entity_store.close()
