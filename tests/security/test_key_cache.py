"""Keys kept in memory (MCPDO_KEY_CACHE_SECONDS) as an attacker would try them: near-miss secrets, another
tenant's key in between, a revocation by the process that keeps them."""

from __future__ import annotations

from pathlib import Path

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
    for guess in (victim_secret[:-1], victim_secret[:-1] + "A", victim_secret + " x", victim_secret.upper()):
        with pytest.raises(Unauthorized):
            await auth.authenticate(f"Bearer {guess}")
    await auth.revoke_key(attacker.id)
    with pytest.raises(Unauthorized, match="revoked"):
        await auth.authenticate(f"Bearer {attacker_secret}")
    victim_now = await auth.authenticate(f"Bearer {victim_secret}")
    assert (victim_now.id, victim_now.tenant, victim_now.roles) == (victim.id, "acme", ("member",))
