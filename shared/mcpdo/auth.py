"""Turning credentials into an Identity: anonymous callers, API keys (hashed at rest) and OAuth bearer tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from mcpdo.errors import CredentialsRequired, InputError, NotFound, Unauthorized
from mcpdo.identity import Identity
from mcpdo.inputs import quote
from mcpdo.ports import ApiKey, KeyStore, TokenVerifier, VerifiedToken
from mcpdo.settings import AuthSettings
from mcpdo.timeparse import format_iso, parse_instant, utc_now

KEY_PREFIX = "sk_"
# `last_used_at` is written at most this often per key: a use per request would be a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_TENANT_BYTES = 512
# The tenant of a token user whose token names none: their own.
PERSONAL_PREFIX = "user:"
# Keys kept by `KeyCache` at most (the least recently used go first).
KEY_CACHE_SIZE = 1024


class KeyCache:
    """Keys read from the store, each for `ttl_s` seconds (AuthSettings.key_cache_s): by secret hash for the
    callers that present them (on Lambda every authenticated call read its key from DynamoDB, a third of a warm
    call's time) and by `id:<key id>` for the module owners whose handlers a delivery runs. Only keys that
    exist are kept, so a wrong key is looked up every time; expiry is checked on each use, and a key revoked
    through this process is dropped at once, under both names."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._keys: OrderedDict[str, tuple[ApiKey, float]] = OrderedDict()
        # Bumped by every drop: a read that began before a revocation must not put the old key back.
        self.generation = 0

    def get(self, name: str) -> ApiKey | None:
        found = self._keys.get(name)
        if found is None:
            return None
        key, read_at = found
        if self._clock() - read_at >= self._ttl_s:
            del self._keys[name]
            return None
        self._keys.move_to_end(name)
        return key

    def put(self, name: str, key: ApiKey, read_in: int) -> None:
        """Keep `key` under `name`, read while the cache was at generation `read_in` (not if a drop came since)."""
        if self._ttl_s <= 0 or read_in != self.generation:
            return
        self._keys[name] = (key, self._clock())
        self._keys.move_to_end(name)
        while len(self._keys) > KEY_CACHE_SIZE:
            self._keys.popitem(last=False)

    def touched(self, secret_hash: str, key: ApiKey, read_in: int) -> None:
        """`key` with its new last use (written while the cache was at generation `read_in`), kept until its
        first read's time is up; not if a drop came since: the write may straddle a revocation."""
        found = self._keys.get(secret_hash)
        if found is not None and read_in == self.generation:
            self._keys[secret_hash] = (key, found[1])

    def drop(self, key_id: str) -> None:
        self.generation += 1
        for name in [name for name, (key, _) in self._keys.items() if key.id == key_id]:
            del self._keys[name]


def hash_secret(secret: str) -> str:
    """Keys carry 256 bits of randomness, so one SHA-256 is enough (no password stretching needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Authenticator:
    """Creates, lists, revokes and checks API keys; verifies OAuth tokens when an issuer is configured."""

    def __init__(
        self,
        keys: KeyStore,
        default_tenant: str,
        settings: AuthSettings | None = None,
        *,
        tokens: TokenVerifier | None = None,
        clock: Callable[[], datetime] = utc_now,
        cache_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._default_tenant = default_tenant
        self._settings = settings or AuthSettings()
        self._tokens = tokens
        self._clock = clock
        self._cache = KeyCache(self._settings.key_cache_s, cache_clock)

    @property
    def roles(self) -> tuple[str, ...]:
        return self._settings.roles.names

    async def create_key(
        self,
        name: str,
        *,
        tenant: str | None = None,
        roles: tuple[str, ...] = ("member",),
        expires_at: str | None = None,
    ) -> tuple[str, ApiKey]:
        """A new key; the secret is returned once and never stored."""
        if not name.strip():
            raise InputError("A key needs a non-empty --name")
        tenant = tenant if tenant is not None else self._default_tenant
        # A key in the anonymous callers' tenant (asked for by name) is how content is published to them.
        check_tenant(tenant, "--tenant")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            name=name.strip(),
            tenant=tenant,
            roles=self._settings.roles.checked(roles),
            prefix=secret[:7],
            created_at=format_iso(self._clock()),
            expires_at=self._expiry(expires_at),
        )
        await self._keys.add(key, hash_secret(secret))
        return secret, key

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key, or one tenant's."""
        return [key for key in await self._keys.list() if tenant is None or key.tenant == tenant]

    async def revoke_key(self, key_id: str) -> None:
        self._cache.drop(key_id)
        revoked = await self._keys.revoke(key_id, format_iso(self._clock()))
        self._cache.drop(key_id)  # and whatever a lookup under way put back meanwhile
        if not revoked:
            raise NotFound(f"API key {key_id} not found (or already revoked)")

    async def current(self, identity: Identity) -> Identity | None:
        """A stored identity (a module's owner) as it stands now: its key's roles today and the grants the
        deployment gives them, or None when its key is revoked, expired or gone."""
        if identity.is_anonymous:
            return identity
        roles = identity.roles
        if identity.auth_type == "apiKey":
            key_id = identity.id or ""
            key = await self._cached_key(f"id:{key_id}", lambda: self._keys.get(key_id))
            if key is None or not self._usable(key):
                return None
            roles = key.roles
        elif identity.expires_at is None or self._expired(identity.expires_at):
            # No issuer is asked at delivery time: the registering token's expiry bounds its handlers.
            return None
        return replace(identity, roles=roles, grants=self._settings.roles.grants_for(roles))

    async def authenticate(self, authorization: str | None) -> Identity:
        """No header: anonymous (read-only), unless the deployment refuses them. A header that does not check
        out: Unauthorized, never anonymous."""
        if authorization is None or not authorization.strip():
            if not self._settings.anonymous:
                raise CredentialsRequired(
                    "This server takes no anonymous calls: send 'Authorization: Bearer <API key or OAuth token>'"
                )
            return Identity.anonymous(self._settings.anonymous_tenant)
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Malformed Authorization header: expected 'Bearer <token>'")
        if token.startswith(KEY_PREFIX):
            return await self._identity_for_key(token)
        if self._tokens is None:
            raise Unauthorized("Unsupported bearer token: this deployment accepts API keys (sk_...)")
        return self._identity_for_token(await self._tokens.verify(token))

    async def _identity_for_key(self, secret: str) -> Identity:
        # An indexed read on every request unless the deployment keeps keys for a while (key_cache_s).
        secret_hash = hash_secret(secret)
        key = await self._cached_key(secret_hash, lambda: self._keys.find_by_hash(secret_hash))
        if key is None or key.revoked_at is not None:
            raise Unauthorized("Invalid or revoked API key")
        if not self._usable(key):
            raise Unauthorized(f"API key {key.id} expired at {key.expires_at}")
        generation = self._cache.generation
        key = await self._note_use(key)
        self._cache.touched(secret_hash, key, generation)
        return Identity.for_roles(
            id=key.id,
            tenant=key.tenant,
            auth_type="apiKey",
            roles=key.roles,
            scopes=key.roles,
            table=self._settings.roles,
            name=key.name,
            issued_at=key.created_at,
            expires_at=key.expires_at,
        )

    async def _cached_key(self, name: str, read: Callable[[], Awaitable[ApiKey | None]]) -> ApiKey | None:
        """The key kept under `name`, else `read()` from the store (and kept, if it exists)."""
        key = self._cache.get(name)
        if key is None:
            generation = self._cache.generation
            key = await read()
            if key is not None:
                self._cache.put(name, key, generation)
        return key

    def _identity_for_token(self, token: VerifiedToken) -> Identity:
        """A verified token's subject: tenant from its claim (else a personal one), roles from its scopes."""
        settings = self._settings
        roles = sorted({settings.oauth_role_scopes[s] for s in token.scopes if s in settings.oauth_role_scopes})
        return Identity.for_roles(
            id=token.subject,
            tenant=self._tenant_of(token.claims, token.subject),
            auth_type="oauth",
            roles=tuple(roles) or ("reader",),
            scopes=token.scopes,
            table=settings.roles,
            name=token.name,
            email=token.email,
            issued_at=format_iso(token.issued_at * 1000) if token.issued_at is not None else None,
            expires_at=format_iso(token.expires_at * 1000),
        )

    def _tenant_of(self, claims: Mapping[str, Any], subject: str) -> str:
        """The tenant claim's value; without one a personal tenant, never the shared default or public one."""
        name = self._settings.oauth_tenant_claim
        value = claims.get(name)
        if value is None:
            value, where = PERSONAL_PREFIX + subject, "token subject (sub)"
        elif isinstance(value, str):
            where = f"token claim '{name}'"
        else:
            raise Unauthorized(f"Token claim '{name}' must be a string naming the tenant")
        try:
            check_tenant(value, where)
        except InputError as exc:
            raise Unauthorized(exc.message) from None
        if value.startswith(PERSONAL_PREFIX) and value != PERSONAL_PREFIX + subject:
            # Personal tenants belong to one subject: a claim a user may be able to edit cannot name another's.
            raise Unauthorized(f"Token claim '{name}' names another user's personal tenant")
        return value

    def _usable(self, key: ApiKey) -> bool:
        return key.revoked_at is None and (key.expires_at is None or not self._expired(key.expires_at))

    def _expired(self, expires_at: str) -> bool:
        """Whether the instant has passed (one that does not parse counts as passed)."""
        expiry = parse_instant(expires_at)
        return expiry is None or self._clock() >= expiry

    async def _note_use(self, key: ApiKey) -> ApiKey:
        """`key`, its last use recorded when the stored one is older than LAST_USED_RESOLUTION."""
        now = self._clock()
        last = parse_instant(key.last_used_at) if key.last_used_at else None
        if last is not None and now - last < LAST_USED_RESOLUTION:
            return key
        used = format_iso(now)
        await self._keys.touch(key.id, used)
        return replace(key, last_used_at=used)

    def _expiry(self, expires_at: str | None) -> str | None:
        """An expiry given as an instant or a relative time ('in 30 days'), stored as an ISO instant."""
        if expires_at is None:
            return None
        moment = parse_instant(expires_at, self._clock())
        if moment is None or moment <= self._clock():
            raise InputError(
                f"--expires must be a future instant or a relative time like 'in 30 days', got {expires_at!r}"
            )
        return format_iso(moment)


def check_tenant(tenant: str, where: str) -> None:
    """A tenant is a short printable name: it goes into every storage key, so it must fit in each of them.
    Counted in bytes as the keys hold it (UTF-8, and `#` and `%` written as `%23` and `%25`)."""
    size = len(tenant.encode("utf-8", "surrogatepass")) + 2 * (tenant.count("#") + tenant.count("%"))
    if not tenant or size > MAX_TENANT_BYTES or not tenant.isprintable():
        raise InputError(
            f"The tenant in {where} must be printable text of at most {MAX_TENANT_BYTES} bytes, got {quote(tenant, 80)}"
        )
