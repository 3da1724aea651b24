"""KeyStore contract: every adapter stores keys by hash only, finds, lists and revokes them the same way."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from mcpdo.adapters.dynamodb_keys import DynamoKeyStore
from mcpdo.adapters.memory import MemoryKeyStore
from mcpdo.adapters.sqlite_keys import SqliteKeyStore
from mcpdo.errors import Conflict
from mcpdo.ports import ApiKey, KeyStore

from tests.contract.dynamodb_backends import dynamo_table

pytestmark = pytest.mark.anyio

# Each factory gets a fresh directory, and the test's request for the fixtures it needs (a moto table).
KEY_STORES: dict[str, Callable[[Path, pytest.FixtureRequest], KeyStore]] = {
    "memory": lambda path, request: MemoryKeyStore(),
    "sqlite": lambda path, request: SqliteKeyStore(path / "keys.db"),
    "dynamodb": lambda path, request: DynamoKeyStore(dynamo_table(request)),
}


@pytest.fixture(params=sorted(KEY_STORES))
async def keys(request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str) -> AsyncIterator[KeyStore]:
    store = KEY_STORES[request.param](tmp_path, request)
    try:
        yield store
    finally:
        await store.close()


def key(n: int, tenant: str = "acme", created: str = "2026-01-01T00:00:00.000Z") -> ApiKey:
    return ApiKey(
        id=f"key_{n}", name=f"key {n}", tenant=tenant, roles=("member",), prefix=f"sk_{n}", created_at=created
    )


async def test_a_stored_key_is_found_by_its_hash_and_its_id_and_never_by_the_secret(keys: KeyStore) -> None:
    await keys.add(key(1), "hash-1")
    assert await keys.find_by_hash("hash-1") == key(1)
    assert await keys.get("key_1") == key(1)
    assert await keys.find_by_hash("sk_1") is None
    assert await keys.get("key_2") is None


async def test_keys_list_in_creation_order(keys: KeyStore) -> None:
    await keys.add(key(2, created="2026-01-02T00:00:00.000Z"), "hash-2")
    await keys.add(key(1, created="2026-01-01T00:00:00.000Z"), "hash-1")
    assert [k.id for k in await keys.list()] == ["key_1", "key_2"]


async def test_a_revoked_key_keeps_its_record_with_the_time_and_is_revoked_once(keys: KeyStore) -> None:
    await keys.add(key(1), "hash-1")
    assert await keys.revoke("key_1", "2026-02-01T00:00:00.000Z") is True
    assert await keys.revoke("key_1", "2026-03-01T00:00:00.000Z") is False
    assert await keys.revoke("key_9", "2026-03-01T00:00:00.000Z") is False
    found = await keys.find_by_hash("hash-1")
    assert found is not None and found.revoked_at == "2026-02-01T00:00:00.000Z"


async def test_a_key_whose_id_or_hash_is_taken_is_refused_and_the_first_stays(keys: KeyStore) -> None:
    await keys.add(key(1), "hash-1")
    with pytest.raises(Conflict):
        await keys.add(key(1), "hash-other")
    with pytest.raises(Conflict):
        await keys.add(key(2), "hash-1")
    assert [k.id for k in await keys.list()] == ["key_1"]
    assert await keys.find_by_hash("hash-other") is None


async def test_a_key_keeps_its_expiry_and_its_last_use_is_seen_by_id_by_hash_and_in_the_list(keys: KeyStore) -> None:
    expiring = dataclasses.replace(key(1), expires_at="2027-01-01T00:00:00.000Z")
    await keys.add(expiring, "hash-1")
    assert (await keys.find_by_hash("hash-1")) == expiring
    await keys.touch("key_1", "2026-06-01T12:00:00.000Z")
    await keys.touch("key_9", "2026-06-01T12:00:00.000Z")  # unknown: ignored, nothing created
    by_hash, by_id = await keys.find_by_hash("hash-1"), await keys.get("key_1")
    assert by_hash is not None and by_id is not None
    assert by_hash.last_used_at == by_id.last_used_at == "2026-06-01T12:00:00.000Z"
    assert by_hash.expires_at == "2027-01-01T00:00:00.000Z"
    assert [(k.id, k.last_used_at) for k in await keys.list()] == [("key_1", "2026-06-01T12:00:00.000Z")]
    assert await keys.get("key_9") is None
