"""Roles, grants and API keys: who may do what."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mcpdo.adapters.sqlite_keys import SqliteKeyStore
from mcpdo.auth import Authenticator, hash_secret
from mcpdo.errors import (
    AuthenticationRequired,
    CredentialsRequired,
    InputError,
    NotFound,
    PermissionDenied,
    Unauthorized,
)
from mcpdo.identity import Identity, Roles
from mcpdo.ports import VerifiedToken
from mcpdo.sdk.policy import authorize
from mcpdo.settings import AuthSettings, Settings

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


async def test_no_header_is_anonymous_in_the_public_tenant_never_the_keys_one(tmp_path: Path) -> None:
    auth = Authenticator(SqliteKeyStore(tmp_path / "keys.db"), "default")
    identity = await auth.authenticate(None)
    assert identity.is_anonymous and identity.tenant == "public" and identity.current() is None
    _, key = await auth.create_key("first")
    assert key.tenant == "default" and key.roles == ("member",)  # least privilege unless asked
    _, publisher = await auth.create_key("publisher", tenant="public")  # publishing to anonymous readers
    assert publisher.tenant == "public"


async def test_without_anonymous_callers_no_header_is_a_401_without_an_error_code(tmp_path: Path) -> None:
    auth = Authenticator(SqliteKeyStore(tmp_path / "keys.db"), "default", AuthSettings(anonymous=False))
    with pytest.raises(CredentialsRequired, match="no anonymous calls"):
        await auth.authenticate(None)


async def test_unknown_roles_are_refused_with_the_valid_ones_listed(tmp_path: Path) -> None:
    auth = Authenticator(SqliteKeyStore(tmp_path / "keys.db"), "default")
    with pytest.raises(InputError, match="Unknown role\\(s\\): superuser; valid roles: admin, member, reader"):
        await auth.create_key("x", roles=("superuser",))


def test_custom_roles_grant_exactly_their_action_resource_pairs() -> None:
    roles = Roles.with_custom({"support": ["read:*", "list:*", "update:Ticket"], "auditor": ["audit:Execution"]})
    support = Identity.for_roles(id="k", tenant="t", auth_type="apiKey", roles=("support",), table=roles)
    assert support.can("update", "Ticket") and support.can("list", "Order")
    assert not support.can("update", "Order") and not support.can("delete", "Ticket")
    with pytest.raises(PermissionDenied, match="Permission denied: update Order"):
        authorize(support, "update", "Order")
    member = Identity.for_roles(id="m", tenant="t", auth_type="apiKey", roles=("member",), table=roles)
    assert not member.can("audit", "Execution")
    assert Identity.for_roles(id="a", tenant="t", auth_type="apiKey", roles=("auditor",), table=roles).can(
        "audit", "Execution"
    )


@pytest.mark.parametrize(
    ("custom", "error"),
    [
        ({"admin": ["read:*"]}, "built in"),
        ({"x": ["read"]}, "'action:resource'"),
        ({"x": ["steal:*"]}, "Unknown action 'steal'"),
        ({"x": "read:*"}, "needs a list"),
    ],
)
def test_bad_custom_roles_are_refused_by_name(custom: dict[str, object], error: str) -> None:
    with pytest.raises(InputError, match=error):
        Roles.with_custom(custom)  # type: ignore[arg-type]


async def test_an_expired_key_is_refused_and_its_handlers_stop(tmp_path: Path) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    auth = Authenticator(SqliteKeyStore(tmp_path / "keys.db"), "default", clock=lambda: now[0])
    secret, key = await auth.create_key("short", expires_at="in 1 hour")
    assert key.expires_at == "2026-01-01T01:00:00.000Z"
    owner = await auth.authenticate(f"Bearer {secret}")
    assert await auth.current(owner) is not None
    now[0] += timedelta(hours=2)
    with pytest.raises(Unauthorized, match="expired"):
        await auth.authenticate(f"Bearer {secret}")
    assert await auth.current(owner) is None
    with pytest.raises(InputError, match="--expires"):
        await auth.create_key("past", expires_at="yesterday")


@pytest.mark.parametrize("key_cache_s", [0, 300], ids=["read-every-call", "keys-kept"])
async def test_the_last_use_is_kept_to_the_minute(tmp_path: Path, key_cache_s: int) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    store = SqliteKeyStore(tmp_path / "keys.db")
    auth = Authenticator(store, "default", AuthSettings(key_cache_s=key_cache_s), clock=lambda: now[0])
    secret, key = await auth.create_key("used")

    async def last_used() -> str | None:
        await auth.authenticate(f"Bearer {secret}")
        stored = await store.get(key.id)
        assert stored is not None
        return stored.last_used_at

    assert await last_used() == "2026-01-01T00:00:00.000Z"
    now[0] += timedelta(seconds=30)
    assert await last_used() == "2026-01-01T00:00:00.000Z"  # not a write per request
    now[0] += timedelta(seconds=31)
    assert await last_used() == "2026-01-01T00:01:01.000Z"


async def test_a_module_owner_runs_with_the_roles_its_key_has_now(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "keys.db")
    auth = Authenticator(store, "default")
    _, key = await auth.create_key("owner", roles=("reader",))
    # Stored when the key was still an admin one: the grants of today's roles are what it runs with.
    stale = Identity.for_roles(id=key.id, tenant="default", auth_type="apiKey", roles=("admin",))
    now = await auth.current(stale)
    assert now is not None and now.roles == ("reader",) and not now.can("create", "Order")
    await auth.revoke_key(key.id)
    assert await auth.current(stale) is None


@dataclass
class Tokens:
    """A TokenVerifier that has already verified (the JWT checks have their own contract suite)."""

    token: VerifiedToken

    async def verify(self, token: str) -> VerifiedToken:
        if token != "good.jwt.token":
            raise Unauthorized("Token signature does not verify")
        return self.token

    async def close(self) -> None:
        return None


def verified(claims: dict[str, object], scopes: tuple[str, ...] = ("mcp:write",)) -> VerifiedToken:
    return VerifiedToken("olga", scopes, 1_700_000_000, 1_700_003_600, "o@x.test", "Olga", claims)


@pytest.mark.parametrize(
    ("claims", "scopes", "tenant", "roles"),
    [
        ({"tenant": "acme"}, ("mcp:write", "openid"), "acme", ("member",)),
        ({}, ("mcp:admin", "mcp:read"), "user:olga", ("admin", "reader")),
        ({"tenant": "acme"}, (), "acme", ("reader",)),
    ],
)
async def test_a_token_caller_gets_its_tenant_from_the_claim_and_roles_from_scopes(
    tmp_path: Path, claims: dict[str, object], scopes: tuple[str, ...], tenant: str, roles: tuple[str, ...]
) -> None:
    auth = Authenticator(SqliteKeyStore(tmp_path / "k.db"), "default", tokens=Tokens(verified(claims, scopes)))
    identity = await auth.authenticate("Bearer good.jwt.token")
    assert (identity.id, identity.tenant, identity.roles, identity.auth_type) == ("olga", tenant, roles, "oauth")
    assert identity.current() == {
        "id": "olga",
        "tenant": tenant,
        "roles": list(roles),
        "email": "o@x.test",
        "name": "Olga",
    }
    assert identity.session()["issuedAt"] == "2023-11-14T22:13:20.000Z"
    with pytest.raises(Unauthorized):
        await auth.authenticate("Bearer bad.jwt.token")


@pytest.mark.parametrize("claim", [42, "", "x" * 600, "tab\there", "user:bob", "user:"])
async def test_a_malformed_tenant_claim_is_a_401(tmp_path: Path, claim: object) -> None:
    auth = Authenticator(SqliteKeyStore(tmp_path / "k.db"), "default", tokens=Tokens(verified({"tenant": claim})))
    with pytest.raises(Unauthorized, match="tenant"):
        await auth.authenticate("Bearer good.jwt.token")


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"MCPDO_ANONYMOUS_TENANT": "default"}, "anonymous callers would read it"),
        ({"MCPDO_ANONYMOUS": "maybe"}, "MCPDO_ANONYMOUS"),
        ({"MCPDO_OAUTH_ROLE_SCOPES": "mcp:all=root"}, "unknown role"),
        ({"MCPDO_ROLES": "{not json"}, "MCPDO_ROLES"),
        ({"MCPDO_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"}, "proxy.local"),
    ],
)
def test_bad_identity_settings_are_errors_naming_the_setting(env: dict[str, str], error: str) -> None:
    with pytest.raises(InputError, match=error):
        Settings.from_env({"MCPDO_DATA_DIR": "/tmp/x", **env})


def test_identity_settings_are_read_with_their_defaults() -> None:
    settings = Settings.from_env({"MCPDO_DATA_DIR": "/tmp/x", "MCPDO_OAUTH_ROLE_SCOPES": "support.write=member"})
    assert settings.auth.anonymous and settings.auth.anonymous_tenant == "public"
    assert settings.auth.oauth_role_scopes == {"support.write": "member"}
    assert Settings.from_env({"MCPDO_DATA_DIR": "/tmp/x"}).auth.oauth_role_scopes["mcp:admin"] == "admin"
    assert settings.resource_url == "http://127.0.0.1:8787/mcp"


class CountingKeyStore(SqliteKeyStore):
    """The SQLite key store, counting the lookups by secret hash and by id that reach it."""

    lookups = 0
    reads_by_id = 0

    async def find_by_hash(self, secret_hash: str):  # type: ignore[no-untyped-def]
        self.lookups += 1
        return await super().find_by_hash(secret_hash)

    async def get(self, key_id: str):  # type: ignore[no-untyped-def]
        self.reads_by_id += 1
        return await super().get(key_id)


def _cached(store: SqliteKeyStore, seconds: int, monotonic: list[float], **kwargs: object) -> Authenticator:
    return Authenticator(
        store,
        "default",
        AuthSettings(key_cache_s=seconds),
        cache_clock=lambda: monotonic[0],
        **kwargs,  # type: ignore[arg-type]
    )


async def test_a_kept_key_spares_the_store_and_a_revocation_elsewhere_lands_once_its_time_is_up(
    tmp_path: Path,
) -> None:
    clock = [0.0]
    store = CountingKeyStore(tmp_path / "keys.db")
    server = _cached(store, 10, clock)
    elsewhere = Authenticator(SqliteKeyStore(tmp_path / "keys.db"), "default")  # `mcpdo keys revoke`
    secret, key = await elsewhere.create_key("ci", tenant="acme")
    for _ in range(5):
        assert (await server.authenticate(f"Bearer {secret}")).tenant == "acme"
    assert store.lookups == 1
    await elsewhere.revoke_key(key.id)
    clock[0] = 9.9
    assert (await server.authenticate(f"Bearer {secret}")).id == key.id  # the documented delay
    clock[0] = 10.0
    with pytest.raises(Unauthorized, match="revoked"):
        await server.authenticate(f"Bearer {secret}")
    assert store.lookups == 2


async def test_a_key_revoked_through_the_process_that_keeps_it_is_refused_at_once(tmp_path: Path) -> None:
    auth = _cached(SqliteKeyStore(tmp_path / "keys.db"), 300, [0.0])
    secret, key = await auth.create_key("ci")
    await auth.authenticate(f"Bearer {secret}")
    await auth.revoke_key(key.id)
    with pytest.raises(Unauthorized, match="revoked"):
        await auth.authenticate(f"Bearer {secret}")


async def test_a_kept_key_still_expires_on_time_and_wrong_keys_are_never_kept(tmp_path: Path) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    store = CountingKeyStore(tmp_path / "keys.db")
    auth = _cached(store, 300, [0.0], clock=lambda: now[0])
    secret, _ = await auth.create_key("short", expires_at="in 1 hour")
    await auth.authenticate(f"Bearer {secret}")
    now[0] += timedelta(hours=2)
    with pytest.raises(Unauthorized, match="expired"):
        await auth.authenticate(f"Bearer {secret}")
    before = store.lookups
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await auth.authenticate(f"Bearer {secret[:-1]}x")
    assert store.lookups == before + 3


def test_keys_are_read_on_every_call_unless_the_deployment_keeps_them() -> None:
    assert Settings.from_env({"MCPDO_DATA_DIR": "/tmp/x"}).auth.key_cache_s == 0
    assert Settings.from_env({"MCPDO_DATA_DIR": "/tmp/x", "MCPDO_KEY_CACHE_SECONDS": "10"}).auth.key_cache_s == 10
    with pytest.raises(InputError, match="MCPDO_KEY_CACHE_SECONDS"):
        Settings.from_env({"MCPDO_DATA_DIR": "/tmp/x", "MCPDO_KEY_CACHE_SECONDS": "301"})


async def test_a_module_owner_s_key_is_kept_for_its_deliveries_and_dropped_when_revoked_here(tmp_path: Path) -> None:
    clock = [0.0]
    store = CountingKeyStore(tmp_path / "keys.db")
    auth = _cached(store, 10, clock)
    secret, key = await auth.create_key("owner", tenant="acme")
    owner = await auth.authenticate(f"Bearer {secret}")
    for _ in range(5):
        current = await auth.current(owner)
        assert current is not None and current.id == key.id
    assert store.reads_by_id == 1
    clock[0] = 10.0
    assert await auth.current(owner) is not None
    assert store.reads_by_id == 2
    await auth.revoke_key(key.id)
    assert await auth.current(owner) is None


async def test_a_module_owner_s_key_revoked_elsewhere_stops_its_handlers_once_its_time_is_up(tmp_path: Path) -> None:
    clock = [0.0]
    worker = _cached(CountingKeyStore(tmp_path / "keys.db"), 10, clock)
    elsewhere = Authenticator(SqliteKeyStore(tmp_path / "keys.db"), "default")  # `mcpdo keys revoke`
    secret, key = await elsewhere.create_key("owner", tenant="acme")
    owner = await elsewhere.authenticate(f"Bearer {secret}")
    assert await worker.current(owner) is not None
    await elsewhere.revoke_key(key.id)
    clock[0] = 9.9
    assert await worker.current(owner) is not None  # the documented delay
    clock[0] = 10.0
    assert await worker.current(owner) is None


async def test_without_a_cache_a_module_owner_s_key_is_read_for_every_delivery(tmp_path: Path) -> None:
    store = CountingKeyStore(tmp_path / "keys.db")
    auth = Authenticator(store, "default")
    secret, _ = await auth.create_key("owner")
    owner = await auth.authenticate(f"Bearer {secret}")
    for _ in range(3):
        assert await auth.current(owner) is not None
    assert store.reads_by_id == 3
