"""The host side of `db`: argument checks, policy, then the EntityStore port."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcpdo.audit import AUDIT_TYPE
from mcpdo.errors import InputError
from mcpdo.identity import Identity
from mcpdo.inputs import MAX_RELATION_LENGTH, check_name, show
from mcpdo.ports import Direction, EntityStore, Ref
from mcpdo.query import parse_list_options
from mcpdo.sdk.args import arity, obj, record_id, type_name
from mcpdo.sdk.policy import authorize

if TYPE_CHECKING:
    from mcpdo.audit import AuditReader

_DIRECTIONS: tuple[Direction, ...] = ("out", "in", "both")
Args = list[Any]  # named here: inside the class, `list` is the method


class DbApi:
    """`db.*` for one caller: every call is checked and scoped to the caller's tenant."""

    def __init__(self, store: EntityStore, identity: Identity, audit: AuditReader | None = None) -> None:
        self._store = store
        self._identity = identity
        self._tenant = identity.tenant
        self._audit = audit

    async def list(self, args: Args) -> Any:
        kind, options = arity("db.list", args, 1, 2)
        kind = type_name("db.list", kind)
        if kind == AUDIT_TYPE and self._audit is not None:
            return await self._audit.list(self._identity, obj("db.list", "options", options, optional=True))
        authorize(self._identity, "list", kind)
        query = parse_list_options(obj("db.list", "options", options, optional=True))
        return await self._store.list(self._tenant, kind, query)

    async def get(self, args: Args) -> Any:
        kind, key = arity("db.get", args, 2, 2)
        kind = type_name("db.get", kind)
        authorize(self._identity, "get", kind)
        return await self._store.get(self._tenant, kind, record_id("db.get", key))

    async def create(self, args: Args) -> Any:
        kind, data = arity("db.create", args, 1, 2)
        kind = _writable("db.create", type_name("db.create", kind))
        authorize(self._identity, "create", kind)
        return await self._store.create(self._tenant, kind, obj("db.create", "data", data, optional=True))

    async def update(self, args: Args) -> Any:
        kind, key, data, options = arity("db.update", args, 3, 4)
        kind = _writable("db.update", type_name("db.update", kind))
        authorize(self._identity, "update", kind)
        # The store checks ifVersion (a whole number from 1 to 2^53 - 1), like the data.
        if_version = obj("db.update", "options", options, optional=True).get("ifVersion")
        return await self._store.update(
            self._tenant, kind, record_id("db.update", key), obj("db.update", "data", data), if_version=if_version
        )

    async def delete(self, args: Args) -> Any:
        kind, key = arity("db.delete", args, 2, 2)
        kind = _writable("db.delete", type_name("db.delete", kind))
        authorize(self._identity, "delete", kind)
        return await self._store.delete(self._tenant, kind, record_id("db.delete", key))

    async def relate(self, args: Args) -> Any:
        source, rel, target = arity("db.relate", args, 3, 3)
        source_ref = _ref("db.relate", "from", source)
        target_ref = _ref("db.relate", "to", target)
        authorize(self._identity, "relate", _writable("db.relate", source_ref.type))
        return await self._store.relate(self._tenant, source_ref, _relation("db.relate", rel), target_ref)

    async def related(self, args: Args) -> Any:
        source, rel, direction = arity("db.related", args, 1, 3)
        ref = _ref("db.related", "from", source)
        authorize(self._identity, "related", ref.type)
        direction = direction or "out"
        if direction not in _DIRECTIONS:
            raise InputError(f"db.related(): direction must be one of 'out', 'in', 'both', got {show(direction)}")
        relation = None if rel is None else _relation("db.related", rel)
        return await self._store.related(self._tenant, ref, relation, direction)


def _ref(call: str, name: str, value: Any) -> Ref:
    """A record, a `$` object with an id, or `{ type, id }`."""
    if isinstance(value, dict):
        kind = value.get("$type", value.get("type"))
        key = value.get("id")
        if isinstance(kind, str) and isinstance(key, str) and key:
            return Ref(type=type_name(call, kind), id=record_id(call, key, f"{name} id"))
    raise InputError(f"{call}(): {name} must be a record, a $ object with an id, or {{ type, id }}")


def _relation(call: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_RELATION_LENGTH:
        raise InputError(
            f"{call}(): the relation must be a non-empty name like 'customer' (at most {MAX_RELATION_LENGTH} "
            f"characters), got {show(value)}"
        )
    return check_name(f"{call}(): the relation", value)


def _writable(call: str, kind: str) -> str:
    """Any type but the audit trail's, which only the server writes."""
    if kind == AUDIT_TYPE:
        raise InputError(f"{call}: '{AUDIT_TYPE}' records are the audit trail, written by the server only")
    return kind
