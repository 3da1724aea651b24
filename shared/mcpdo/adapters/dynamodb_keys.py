"""KeyStore on the shared DynamoDB table: API keys by id, by secret hash and in creation order (hashes only).

Key layout (every item of this adapter has a `pk` starting with `KEY`; `sk` is always `KEY`):

- `pk = "KEY#<id>"`: the key's record, with its `secret_hash` (never the secret). It sits in the `gsi1`
  partition `gsi1pk = "KEYS"`, `gsi1sk = "<created_at>#<id>"`, which `list` reads instead of a scan.
- `pk = "KEYHASH#<secret hash>"`: a copy of the same record under its hash. `add` writes both items in one
  transaction, each on the condition that it does not exist yet, so an id and a hash are each stored once.
  `find_by_hash` (every authenticated request) is then one strongly consistent read, so a new key works and a
  revoked one stops at once (a GSI on the hash would lag); `revoke` updates both copies in one transaction.

Roles are kept as JSON text, as the SQLite adapter keeps them.
"""

from __future__ import annotations

import builtins
import json

from mcpdo.adapters.dynamodb_table import ConditionFailed, DynamoTable, Item, text_value
from mcpdo.errors import Conflict
from mcpdo.ports import ApiKey

_SK = "KEY"
_LISTED = "KEYS"
_UNSET = "attribute_not_exists(pk)"


class DynamoKeyStore:
    """KeyStore on the state table; the table (and its client) is shared with the other AWS adapters."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    async def add(self, key: ApiKey, secret_hash: str) -> None:
        """Store a new key under its id and its hash; Conflict when either is taken."""
        record = _record(key, secret_hash)
        by_id = {
            **record,
            **_at(f"KEY#{key.id}"),
            "gsi1pk": text_value(_LISTED),
            "gsi1sk": text_value(f"{key.created_at}#{key.id}"),
        }
        by_hash = {**record, **_at(f"KEYHASH#{secret_hash}")}
        puts = [
            {"Put": {"TableName": self._table.name, "Item": item, "ConditionExpression": _UNSET}}
            for item in (by_id, by_hash)
        ]
        try:
            await self._table.raw("transact_write_items", TransactItems=puts)
        except ConditionFailed as exc:
            raise Conflict(f"API key {key.id} or its secret is already stored") from exc

    async def find_by_hash(self, secret_hash: str) -> ApiKey | None:
        """The key whose secret has this hash, or None."""
        item = await self._item(f"KEYHASH#{secret_hash}")
        return None if item is None else _key(item)

    async def get(self, key_id: str) -> ApiKey | None:
        """The key with this id, or None."""
        item = await self._item(f"KEY#{key_id}")
        return None if item is None else _key(item)

    async def list(self) -> builtins.list[ApiKey]:
        """Every key, by creation time then id."""
        items = await self._table.query_all(
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :listed",
            ExpressionAttributeValues={":listed": text_value(_LISTED)},
        )
        # Sorted here as well: `created_at#id` orders as (created_at, id) only for equal-length times.
        return sorted((_key(item) for item in items), key=lambda key: (key.created_at, key.id))

    async def revoke(self, key_id: str, when: str) -> bool:
        """Mark the key revoked at `when`; False when it is unknown or already revoked."""
        item = await self._item(f"KEY#{key_id}")
        if item is None or "revoked_at" in item:
            return False
        updates = [
            _revoke(self._table.name, pk, when) for pk in (f"KEY#{key_id}", f"KEYHASH#{item['secret_hash']['S']}")
        ]
        try:
            await self._table.raw("transact_write_items", TransactItems=updates)
        except ConditionFailed:
            return False  # revoked by someone else since the read: revoked once, by them
        return True

    async def touch(self, key_id: str, when: str) -> None:
        """Record the last use on both copies (the hash copy is what each request reads)."""
        item = await self._item(f"KEY#{key_id}")
        if item is None:
            return
        for pk in (f"KEY#{key_id}", f"KEYHASH#{item['secret_hash']['S']}"):
            try:
                await self._table.call(
                    "update_item",
                    Key=_at(pk),
                    UpdateExpression="SET last_used_at = :when",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":when": text_value(when)},
                )
            except ConditionFailed:
                return  # gone meanwhile: nothing to record

    async def close(self) -> None:
        """Release the shared table's client (closing it again is harmless)."""
        await self._table.close()

    async def _item(self, pk: str) -> Item | None:
        found = await self._table.call("get_item", Key=_at(pk), ConsistentRead=True)
        item: Item | None = found.get("Item")
        return item


def _at(pk: str) -> Item:
    return {"pk": text_value(pk), "sk": text_value(_SK)}


def _record(key: ApiKey, secret_hash: str) -> Item:
    # Like the SQL insert, a new key is never stored revoked, whatever `revoked_at` says.
    return {
        "id": text_value(key.id),
        "name": text_value(key.name),
        "tenant": text_value(key.tenant),
        "roles": text_value(json.dumps(list(key.roles))),
        "prefix": text_value(key.prefix),
        "secret_hash": text_value(secret_hash),
        "created_at": text_value(key.created_at),
        **({"expires_at": text_value(key.expires_at)} if key.expires_at else {}),
    }


def _revoke(table: str, pk: str, when: str) -> Item:
    return {
        "Update": {
            "TableName": table,
            "Key": _at(pk),
            "UpdateExpression": "SET revoked_at = :when",
            "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(revoked_at)",
            "ExpressionAttributeValues": {":when": text_value(when)},
        }
    }


def _key(item: Item) -> ApiKey:
    return ApiKey(
        id=item["id"]["S"],
        name=item["name"]["S"],
        tenant=item["tenant"]["S"],
        roles=tuple(json.loads(item["roles"]["S"])),
        prefix=item["prefix"]["S"],
        created_at=item["created_at"]["S"],
        revoked_at=_optional(item, "revoked_at"),
        expires_at=_optional(item, "expires_at"),
        last_used_at=_optional(item, "last_used_at"),
    )


def _optional(item: Item, name: str) -> str | None:
    value = item.get(name)
    return None if value is None else value["S"]
