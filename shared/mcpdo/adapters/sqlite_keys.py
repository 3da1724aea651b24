"""API keys in SQLite (hashes only), beside the entities in the same database file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from mcpdo.adapters.sqlite_db import Migration, SqliteDatabase
from mcpdo.errors import Conflict
from mcpdo.ports import ApiKey

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tenant TEXT NOT NULL,
    roles TEXT NOT NULL,
    prefix TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    expires_at TEXT,
    last_used_at TEXT
)
"""
MIGRATIONS: tuple[Migration, ...] = (
    ("api_keys", "expires_at", "TEXT"),
    ("api_keys", "last_used_at", "TEXT"),
)


_COLUMNS = "id, name, tenant, roles, prefix, created_at, revoked_at, expires_at, last_used_at"


class SqliteKeyStore:
    """KeyStore on SQLite; safe to call from several threads."""

    def __init__(self, path: str | Path) -> None:
        self._db = SqliteDatabase(path, what="key store", schema=_SCHEMA, migrations=MIGRATIONS)

    async def add(self, key: ApiKey, secret_hash: str) -> None:
        with self._db.transaction() as conn:
            try:
                conn.execute(
                    "INSERT INTO api_keys (id, name, tenant, roles, prefix, secret_hash, created_at, expires_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key.id,
                        key.name,
                        key.tenant,
                        json.dumps(list(key.roles)),
                        key.prefix,
                        secret_hash,
                        key.created_at,
                        key.expires_at,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"API key {key.id} or its secret is already stored") from exc

    async def find_by_hash(self, secret_hash: str) -> ApiKey | None:
        return self._one("secret_hash", secret_hash)

    async def get(self, key_id: str) -> ApiKey | None:
        return self._one("id", key_id)

    async def list(self) -> list[ApiKey]:
        with self._db.transaction(immediate=False) as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id").fetchall()
        return [_key(row) for row in rows]

    async def revoke(self, key_id: str, when: str) -> bool:
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (when, key_id)
            )
        return cursor.rowcount > 0

    async def touch(self, key_id: str, when: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (when, key_id))

    def _one(self, column: str, value: str) -> ApiKey | None:
        assert column in ("id", "secret_hash")  # a column name, never caller data
        with self._db.transaction(immediate=False) as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE {column} = ?", (value,)).fetchone()
        return _key(row) if row else None

    async def close(self) -> None:
        self._db.close()


def _key(row: tuple[str, str, str, str, str, str, str | None, str | None, str | None]) -> ApiKey:
    key_id, name, tenant, roles, prefix, created_at, revoked_at, expires_at, last_used_at = row
    return ApiKey(
        id=key_id,
        name=name,
        tenant=tenant,
        roles=tuple(json.loads(roles)),
        prefix=prefix,
        created_at=created_at,
        revoked_at=revoked_at,
        expires_at=expires_at,
        last_used_at=last_used_at,
    )
