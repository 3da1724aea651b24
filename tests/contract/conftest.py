"""EntityStore adapters under contract: each param builds a fresh, empty store for one test.

A new adapter joins by adding a factory to `STORE_FACTORIES`; it must then pass the whole suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import boto3
import pytest
from mcpdo.adapters.dynamodb_store import DynamoEntityStore
from mcpdo.adapters.dynamodb_table import DynamoTable
from mcpdo.adapters.memory_store import MemoryEntityStore
from mcpdo.adapters.sqlite_store import SqliteEntityStore
from mcpdo.ports import EntityStore


def _sqlite(tmp_path: Path, request: pytest.FixtureRequest) -> EntityStore:
    return SqliteEntityStore(tmp_path / "entities.db")


def _dynamodb(tmp_path: Path, request: pytest.FixtureRequest) -> EntityStore:
    # A fresh table in the session's moto server, asked for first: it points boto3 at moto.
    table = request.getfixturevalue("state_table")
    client = boto3.client("dynamodb", region_name="us-east-1")
    return DynamoEntityStore(DynamoTable(client, table, what="entity store"))


STORE_FACTORIES: dict[str, Callable[[Path, pytest.FixtureRequest], EntityStore]] = {
    "dynamodb": _dynamodb,
    "memory": lambda tmp_path, request: MemoryEntityStore(),
    "sqlite": _sqlite,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str) -> AsyncIterator[EntityStore]:
    """A fresh store of each adapter kind."""
    entity_store = STORE_FACTORIES[request.param](tmp_path, request)
    try:
        yield entity_store
    finally:
        await entity_store.close()
