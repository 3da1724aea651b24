"""Keys kept in memory (MCPDO_KEY_CACHE_SECONDS) as an attacker would try them: near-miss secrets, another
tenant's key in between, a revocation by the process that keeps them."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcpdo.adapters.sqlite_keys import SqliteKeyStore
from mcpdo.auth import Authenticator
from mcpdo.errors import Unauthorized
from mcpdo.settings import AuthSettings

pytestmark = pytest.mark.anyio


async def test_kept_keys_never_answer_for_another_secret_or_outlive_their_revocation(tmp_path: Path) -> None:
    auth = Authenticator(SqliteKeyStore(tmp_path / "keys.db"), "default", AuthSettings(key_cache_s=300))
    victim_secret, victim = await auth.create_key("victim", tenant="acme")
    attacker_secret, attacker = await auth.create_key("attacker", tenant="evil")
    for _ in range(3):
        assert (await auth.authenticate(f"Bearer {victim_secret}")).tenant == "acme"
        assert (await auth.authenticate(f"Bearer {attacker_secret}")).tenant == "evil"
    # Near misses of a kept secret (its prefix, one character changed, padded) are each looked up, and fail.
    changed = victim_secret[:-1] + ("A" if victim_secret[-1] != "A" else "B")
    for guess in (victim_secret[:-1], changed, victim_secret + " x", victim_secret.upper()):
        with pytest.raises(Unauthorized):
            await auth.authenticate(f"Bearer {guess}")
    await auth.revoke_key(attacker.id)
    with pytest.raises(Unauthorized, match="revoked"):
        await auth.authenticate(f"Bearer {attacker_secret}")
    victim_now = await auth.authenticate(f"Bearer {victim_secret}")
    assert (victim_now.id, victim_now.tenant, victim_now.roles) == (victim.id, "acme", ("member",))


class SlowLookups(SqliteKeyStore):
    """A key store whose lookups by hash wait until `release` is set: a read still under way."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = anyio.Event()
        self.reading = anyio.Event()

    async def find_by_hash(self, secret_hash: str):  # type: ignore[no-untyped-def]
        found = await super().find_by_hash(secret_hash)
        self.reading.set()
        await self.release.wait()
        return found


async def test_a_lookup_under_way_during_a_revocation_does_not_put_the_key_back(tmp_path: Path) -> None:
    store = SlowLookups(tmp_path / "keys.db")
    auth = Authenticator(store, "default", AuthSettings(key_cache_s=300))
    secret, key = await auth.create_key("leaked")
    async with anyio.create_task_group() as group:
        group.start_soon(auth.authenticate, f"Bearer {secret}")  # reads the key before it is revoked
        await store.reading.wait()
        await auth.revoke_key(key.id)
        store.release.set()
    with pytest.raises(Unauthorized, match="revoked"):
        await auth.authenticate(f"Bearer {secret}")


class SlowTouch(SqliteKeyStore):
    """The SQLite key store whose last-use write waits until the test lets it go."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = anyio.Event()
        self.entered = anyio.Event()

    async def touch(self, key_id: str, used: str) -> None:  # type: ignore[override]
        self.entered.set()
        await self.gate.wait()
        await super().touch(key_id, used)


async def test_a_last_use_write_that_straddles_a_revocation_does_not_put_the_key_back(tmp_path: Path) -> None:
    clock = [0.0]
    store = SlowTouch(tmp_path / "keys.db")
    auth = Authenticator(store, "default", AuthSettings(key_cache_s=10), cache_clock=lambda: clock[0])
    secret, key = await auth.create_key("victim")
    accepted: list[str | None] = []

    async def first_use() -> None:
        accepted.append((await auth.authenticate(f"Bearer {secret}")).id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(first_use)
        await store.entered.wait()  # the first request read the key and is writing its last use
        await auth.revoke_key(key.id)  # revoked through this very process meanwhile
        with pytest.raises(Unauthorized, match="revoked"):
            await auth.authenticate(f"Bearer {secret}")
        store.gate.set()
    assert accepted == [key.id]  # it was valid when that request began
    clock[0] = 9.0
    with pytest.raises(Unauthorized, match="revoked"):
        await auth.authenticate(f"Bearer {secret}")
