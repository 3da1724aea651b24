"""ModuleStore on the shared DynamoDB table: every registered version of every module, per tenant.

Key layout (`<tenant>` has `%` and `#` percent-encoded, so the first `#` after it ends it and a module id,
kept whole as the last part, may contain anything):

- `pk = "MOD#<tenant>#<module id>"`, `sk = "V#<version, 10 digits>"`: one version, written once.
- same `pk`, `sk = "LATEST"`: a copy of the latest version, in the `gsi2` partition `gsi2pk = "MODS#<tenant>"`
  with `gsi2sk = "M#<module id>"` (prefixed so that even an empty id is a valid key). `get` without a version
  and `next_version` read it; `list(tenant)` queries that partition, which DynamoDB orders by the ids' UTF-8
  bytes, as SQLite's `ORDER BY id` does.

`save` is one transaction: the version item on the condition that it is new, the latest copy on the condition
that it holds an older version (or none). Concurrent registrations of one module cannot both store a version,
and the latest copy never goes back. Owner, exports and metadata are JSON text encoded as the SQLite adapter
encodes them, so they read back the same.
"""

from __future__ import annotations

import builtins
from typing import Any

from mcpdo.adapters.dynamodb_table import ConditionFailed, DynamoTable, Item, key_part, text_value
from mcpdo.errors import Conflict
from mcpdo.ports import StoredModule
from mcpdo.stored_modules import check_version, decode, encode

_LATEST = "LATEST"
_NEWER = "attribute_not_exists(pk) OR #version < :version"
_VERSION_NAME = {"#version": "version"}  # spelled through a name: expressions refuse some attribute names


class DynamoModuleStore:
    """ModuleStore on the state table; the table (and its client) is shared with the other AWS adapters."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    async def save(self, module: StoredModule) -> None:
        """Store a new version; Conflict when that version or a later one exists."""
        check_version(module.version)
        fields = _fields(module)
        pk = _pk(module.tenant, module.id)
        latest = {**fields, "pk": text_value(pk), "sk": text_value(_LATEST), **_listed(module.tenant, module.id)}
        writes = [
            _put(self._table.name, {**fields, "pk": text_value(pk), "sk": text_value(_version_sk(module.version))}),
            _put(
                self._table.name,
                latest,
                _NEWER,
                ExpressionAttributeNames=_VERSION_NAME,
                ExpressionAttributeValues={":version": _n(module.version)},
            ),
        ]
        try:
            await self._table.raw("transact_write_items", TransactItems=writes)
        except ConditionFailed as exc:
            raise await self._conflict(module, exc.reasons) from exc

    async def get(self, tenant: str, id: str, version: int | None = None) -> StoredModule | None:
        """One version of a module (the latest when `version` is None), or None."""
        sk = _LATEST if version is None else _version_sk(version)
        item = await self._item(_pk(tenant, id), sk)
        return None if item is None else _module(item)

    async def next_version(self, tenant: str, id: str) -> int:
        """The version number the next save of this module should carry (1 for a new module)."""
        latest = await self._latest_version(tenant, id)
        return 1 if latest is None else latest + 1

    async def list(self, tenant: str) -> builtins.list[StoredModule]:
        """The latest version of every module of `tenant`, by id."""
        items = await self._table.query_all(
            IndexName="gsi2",
            KeyConditionExpression="gsi2pk = :tenant",
            ExpressionAttributeValues={":tenant": text_value(_tenant_partition(tenant))},
        )
        return [_module(item) for item in items]

    async def close(self) -> None:
        """Release the shared table's client (closing it again is harmless)."""
        await self._table.close()

    async def _conflict(self, module: StoredModule, reasons: tuple[str, ...]) -> Conflict:
        # The cancellation reasons are in the order of the writes: the version item's comes first, so an
        # existing version is reported as such even when it is also older (the SQLite adapter's order). A
        # transaction names a false condition `ConditionalCheckFailed`, a single write with the `Exception`.
        if not reasons or reasons[0].startswith("ConditionalCheckFailed"):
            return Conflict(f"Module {module.id} version {module.version} already exists")
        latest = await self._latest_version(module.tenant, module.id)
        return Conflict(f"Module {module.id} version {module.version} is older than the latest version {latest}")

    async def _latest_version(self, tenant: str, id: str) -> int | None:
        item = await self._item(
            _pk(tenant, id), _LATEST, ProjectionExpression="#version", ExpressionAttributeNames=_VERSION_NAME
        )
        return None if item is None else int(item["version"]["N"])

    async def _item(self, pk: str, sk: str, **extra: Any) -> Item | None:
        found = await self._table.call(
            "get_item", Key={"pk": text_value(pk), "sk": text_value(sk)}, ConsistentRead=True, **extra
        )
        item: Item | None = found.get("Item")
        return item


def _pk(tenant: str, id: str) -> str:
    return f"MOD#{key_part(tenant)}#{id}"


def _tenant_partition(tenant: str) -> str:
    return f"MODS#{tenant}"


def _listed(tenant: str, id: str) -> Item:
    return {"gsi2pk": text_value(_tenant_partition(tenant)), "gsi2sk": text_value(f"M#{id}")}


def _version_sk(version: int) -> str:
    # Zero-padded so that a module's versions sort in order when read by hand; nothing relies on it.
    return f"V#{version:010d}"


def _n(number: int) -> dict[str, str]:
    return {"N": str(number)}


def _put(table: str, item: Item, condition: str = "attribute_not_exists(pk)", **expression: Any) -> Item:
    return {"Put": {"TableName": table, "Item": item, "ConditionExpression": condition, **expression}}


def _fields(module: StoredModule) -> Item:
    owner, exports, metadata = encode(module)
    fields = {
        "tenant": text_value(module.tenant),
        "id": text_value(module.id),
        "version": _n(module.version),
        "source": text_value(module.source),
        "code": text_value(module.code),
        "owner": text_value(owner),
        "exports": text_value(exports),
        "metadata": text_value(metadata),
        "created_at": text_value(module.created_at),
    }
    if module.type is not None:  # absent, as NULL is in the SQL column
        fields["type"] = text_value(module.type)
    return fields


def _module(item: Item) -> StoredModule:
    type = item.get("type")
    shell = StoredModule(
        tenant=item["tenant"]["S"],
        id=item["id"]["S"],
        version=int(item["version"]["N"]),
        type=None if type is None else type["S"],
        source=item["source"]["S"],
        code=item["code"]["S"],
        owner={},
        exports=(),
        metadata={},
        created_at=item["created_at"]["S"],
    )
    return decode(shell, item["owner"]["S"], item["exports"]["S"], item["metadata"]["S"])
