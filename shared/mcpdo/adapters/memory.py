"""In-memory adapters: real implementations of their ports (each passes the port's contract suite), for
unit tests of the services and for one-shot processes that keep nothing."""

from __future__ import annotations

import builtins
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from mcpdo.errors import Conflict
from mcpdo.inputs import check_listing_limit
from mcpdo.mail import checked_message, listed
from mcpdo.ports import ApiKey, Run
from mcpdo.timeparse import format_iso, now_ms


class MemoryKeyStore:
    """KeyStore in a dict; secrets stay hashed here too."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[ApiKey, str]] = {}

    async def add(self, key: ApiKey, secret_hash: str) -> None:
        if key.id in self._keys or any(stored == secret_hash for _, stored in self._keys.values()):
            raise Conflict(f"API key {key.id} or its secret is already stored")
        self._keys[key.id] = (dataclasses.replace(key, revoked_at=None, last_used_at=None), secret_hash)

    async def find_by_hash(self, secret_hash: str) -> ApiKey | None:
        return next((key for key, stored in self._keys.values() if stored == secret_hash), None)

    async def get(self, key_id: str) -> ApiKey | None:
        found = self._keys.get(key_id)
        return None if found is None else found[0]

    async def list(self) -> builtins.list[ApiKey]:
        return sorted((key for key, _ in self._keys.values()), key=lambda key: (key.created_at, key.id))

    async def revoke(self, key_id: str, when: str) -> bool:
        found = self._keys.get(key_id)
        if found is None or found[0].revoked_at is not None:
            return False
        self._keys[key_id] = (dataclasses.replace(found[0], revoked_at=when), found[1])
        return True

    async def touch(self, key_id: str, when: str) -> None:
        found = self._keys.get(key_id)
        if found is not None:
            self._keys[key_id] = (dataclasses.replace(found[0], last_used_at=when), found[1])

    async def close(self) -> None:
        """Nothing to release."""


class MemoryLeases:
    """Leases in a dict: one owner at a time within this process."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._leases: dict[str, tuple[str, float]] = {}

    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> bool:
        now = self._clock()
        held = self._leases.get(name)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._leases[name] = (owner, now + ttl_seconds)
        return True

    async def release(self, name: str, owner: str) -> None:
        held = self._leases.get(name)
        if held is not None and held[0] == owner:
            del self._leases[name]

    async def holder(self, name: str) -> str | None:
        held = self._leases.get(name)
        return held[0] if held is not None and held[1] > self._clock() else None

    async def close(self) -> None:
        """Nothing to release."""


class MemoryRunLog:
    """RunLog in a list: the latest `keep` runs are kept."""

    def __init__(self, *, keep: int = 10_000) -> None:
        self._keep = keep
        self._runs: builtins.list[Run] = []

    async def record_run(self, run: Run) -> None:
        if any(kept.id == run.id for kept in self._runs):
            return
        self._runs.append(run)
        del self._runs[: -self._keep]

    async def runs(self, tenant: str | None = None, limit: int = 100) -> builtins.list[Run]:
        check_listing_limit(limit)
        newest = [run for run in reversed(self._runs) if tenant is None or run.tenant == tenant]
        return newest[:limit]

    async def close(self) -> None:
        """Nothing to release."""


class MemoryMailer:
    """Mailer that keeps messages in a list, once per idempotency key (never sends)."""

    def __init__(self, *, clock: Callable[[], int] = now_ms) -> None:
        self._clock = clock
        self._sent: builtins.list[tuple[str, str, int, str]] = []

    async def send(self, message: dict[str, Any], idempotency_key: str, *, tenant: str) -> None:
        body = checked_message(message, idempotency_key)
        if all(key != idempotency_key for key, _, _, _ in self._sent):
            self._sent.append((idempotency_key, body, self._clock(), tenant))

    async def list(self, limit: int = 100, *, tenant: str | None = None) -> builtins.list[dict[str, Any]]:
        check_listing_limit(limit)
        latest = [sent for sent in reversed(self._sent) if tenant is None or sent[3] == tenant][:limit]
        return [listed(json.loads(body), format_iso(at), key, owner) for key, body, at, owner in latest]

    async def close(self) -> None:
        """Nothing to release."""
