"""Roles, grants and API keys: who may do what."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcpdo.adapters.sqlite_keys import SqliteKeyStore
from mcpdo.auth import Authenticator, hash_secret
from mcpdo.errors import AuthenticationRequired, InputError, NotFound, PermissionDenied, Unauthorized
from mcpdo.identity import Identity
from mcpdo.sdk.policy import authorize

pytestmark = pytest.mark.anyio


def test_admin_can_do_anything_member_reads_and_writes_reader_only_reads() -> None:
    admin = Identity.for_roles(id="k1", tenant="t", auth_type="apiKey", roles=("admin",))
    member = Identity.for_roles(id="k2", tenant="t", auth_type="apiKey", roles=("member",))
    reader = Identity.for_roles(id="k3", tenant="t", auth_type="apiKey", roles=("reader",))
    assert admin.can("admin", "*") and admin.can("delete", "Order")
    assert member.can("create", "Order") and not member.can("admin", "*")
    assert reader.can("list", "Order") and not reader.can("create", "Order")


def test_anonymous_writes_need_authentication_and_reader_writes_are_denied() -> None:
    with pytest.raises(AuthenticationRequired):
        authorize(Identity.anonymous(), "create", "Order")
    authorize(Identity.anonymous(), "list", "Order")
    reader = Identity.for_roles(id="k3", tenant="t", auth_type="apiKey", roles=("reader",))
    with pytest.raises(PermissionDenied) as caught:
        authorize(reader, "create", "Order")
    assert caught.value.text == "Permission denied: create Order"


async def test_a_created_key_authenticates_is_stored_hashed_and_stops_working_once_revoked(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "keys.db")
    auth = Authenticator(store, "default")
    secret, key = await auth.create_key("ci", tenant="acme", roles=("member",))
    identity = await auth.authenticate(f"Bearer {secret}")
    assert (identity.id, identity.tenant, identity.roles, identity.auth_type) == (key.id, "acme", ("member",), "apiKey")
    raw = (tmp_path / "keys.db").read_bytes() + (tmp_path / "keys.db-wal").read_bytes()
    assert secret.encode() not in raw and hash_secret(secret).encode() in raw
    await auth.revoke_key(key.id)
    with pytest.raises(Unauthorized):
        await auth.authenticate(f"Bearer {secret}")
    with pytest.raises(NotFound):
        await auth.revoke_key(key.id)
    await store.close()


@pytest.mark.parametrize("header", ["Bearer sk_nope", "Basic abc", "Bearer", "Bearer eyJhbGciOi.x.y"])
async def test_bad_credentials_are_unauthorized_never_anonymous(tmp_path: Path, header: str) -> None:
    auth = Authenticator(SqliteKeyStore(tmp_path / "keys.db"), "default")
    with pytest.raises(Unauthorized):
        await auth.authenticate(header)


async def test_no_header_is_anonymous_in_the_default_tenant(tmp_path: Path) -> None:
    auth = Authenticator(SqliteKeyStore(tmp_path / "keys.db"), "public")
    identity = await auth.authenticate(None)
    assert identity.is_anonymous and identity.tenant == "public" and identity.current() is None


async def test_unknown_roles_are_refused(tmp_path: Path) -> None:
    auth = Authenticator(SqliteKeyStore(tmp_path / "keys.db"), "default")
    with pytest.raises(InputError):
        await auth.create_key("x", roles=("superuser",))
