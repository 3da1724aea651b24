"""Turning credentials into an Identity: anonymous, API keys (hashed at rest) and, later, OAuth."""

from __future__ import annotations

import hashlib
import secrets

from mcpdo.errors import InputError, NotFound, Unauthorized
from mcpdo.identity import KNOWN_ROLES, Identity
from mcpdo.ports import ApiKey, KeyStore
from mcpdo.timeparse import format_iso, utc_now

KEY_PREFIX = "sk_"


def hash_secret(secret: str) -> str:
    """Keys carry 256 bits of randomness, so one SHA-256 is enough (no password stretching needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Authenticator:
    """Creates, lists, revokes and checks API keys."""

    def __init__(self, keys: KeyStore, default_tenant: str) -> None:
        self._keys = keys
        self._default_tenant = default_tenant

    async def create_key(
        self, name: str, *, tenant: str | None = None, roles: tuple[str, ...] = ("admin",)
    ) -> tuple[str, ApiKey]:
        """A new key; the secret is returned once and never stored."""
        if not name.strip():
            raise InputError("A key needs a non-empty --name")
        unknown = [role for role in roles if role not in KNOWN_ROLES]
        if unknown or not roles:
            raise InputError(f"Unknown role(s) {unknown or roles!r}; valid roles: {', '.join(KNOWN_ROLES)}")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            name=name.strip(),
            tenant=tenant or self._default_tenant,
            roles=roles,
            prefix=secret[:7],
            created_at=now_iso(),
        )
        await self._keys.add(key, hash_secret(secret))
        return secret, key

    async def list_keys(self) -> list[ApiKey]:
        return await self._keys.list()

    async def revoke_key(self, key_id: str) -> None:
        if not await self._keys.revoke(key_id, now_iso()):
            raise NotFound(f"API key {key_id} not found (or already revoked)")

    async def still_valid(self, identity: Identity) -> bool:
        """Whether a stored identity (a module's owner) may still act: its API key exists and is not revoked."""
        if identity.auth_type != "apiKey" or identity.id is None:
            return True
        key = await self._keys.get(identity.id)
        return key is not None and key.revoked_at is None

    async def authenticate(self, authorization: str | None) -> Identity:
        """No header: anonymous (read-only). A header that does not check out: Unauthorized, never anonymous."""
        if authorization is None or not authorization.strip():
            return Identity.anonymous(self._default_tenant)
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Malformed Authorization header: expected 'Bearer <token>'")
        if not token.startswith(KEY_PREFIX):
            raise Unauthorized("Unsupported bearer token: this deployment accepts API keys (sk_...)")
        return await self._identity_for_key(token)

    async def _identity_for_key(self, secret: str) -> Identity:
        # Looked up on every request (an indexed read), so a revocation takes effect at once.
        key = await self._keys.find_by_hash(hash_secret(secret))
        if key is None or key.revoked_at is not None:
            raise Unauthorized("Invalid or revoked API key")
        return Identity.for_roles(
            id=key.id,
            tenant=key.tenant,
            auth_type="apiKey",
            roles=key.roles,
            scopes=key.roles,
            name=key.name,
            issued_at=key.created_at,
        )


def now_iso() -> str:
    return format_iso(utc_now())
