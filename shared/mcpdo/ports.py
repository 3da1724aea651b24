"""The capabilities the core needs from the outside world; adapters implement them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Record = dict[str, Any]
Direction = Literal["out", "in", "both"]


@dataclass(frozen=True)
class Ref:
    """A pointer to one record: its type and id."""

    type: str
    id: str


@dataclass(frozen=True)
class ListQuery:
    """A validated `db.list` query; `where` is the normalized condition tree from `mcpdo.query`."""

    where: Any = None
    sort: tuple[tuple[str, Literal["asc", "desc"]], ...] = ()
    limit: int = 100
    offset: int = 0
    cursor: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class EntityStore(Protocol):
    """Records of any type, partitioned by tenant. Every method is scoped to exactly one tenant."""

    async def list(self, tenant: str, type: str, query: ListQuery) -> list[Record]: ...

    async def get(self, tenant: str, type: str, id: str) -> Record | None: ...

    async def create(self, tenant: str, type: str, data: Record) -> Record: ...

    async def update(self, tenant: str, type: str, id: str, data: Record,
                     if_version: int | None = None) -> Record: ...

    async def delete(self, tenant: str, type: str, id: str) -> bool: ...

    async def relate(self, tenant: str, source: Ref, rel: str, target: Ref) -> Record: ...

    async def related(self, tenant: str, ref: Ref, rel: str | None,
                      direction: Direction) -> list[Record]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ApiKey:
    """A stored API key: never the secret itself, only its hash and a display prefix."""

    id: str
    name: str
    tenant: str
    roles: tuple[str, ...]
    prefix: str
    created_at: str
    revoked_at: str | None = None


class KeyStore(Protocol):
    """API keys, stored hashed."""

    async def add(self, key: ApiKey, secret_hash: str) -> None: ...

    async def find_by_hash(self, secret_hash: str) -> ApiKey | None: ...

    async def list(self) -> list[ApiKey]: ...

    async def revoke(self, key_id: str, when: str) -> bool: ...
