"""Who is calling: anonymous, an API key or an OAuth subject; roles become grants, and `can` decides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

AuthType = Literal["apiKey", "oauth", "anonymous"]

DEFAULT_TENANT = "default"

# Reads are everything an anonymous caller may do; writes need a role that grants them.
READ_ACTIONS = ("read", "list", "get", "related", "embed", "fetch")
WRITE_ACTIONS = (
    "create",
    "update",
    "delete",
    "relate",
    "send",
    "generate",
    "batch",
    "subscribe",
    "schedule",
    "proxy",
    "register",
)

# (action, resource) patterns each role grants; "*" matches anything.
ROLE_GRANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "admin": (("*", "*"),),
    "member": tuple((action, "*") for action in READ_ACTIONS + WRITE_ACTIONS),
    "reader": tuple((action, "*") for action in READ_ACTIONS),
}
KNOWN_ROLES = tuple(ROLE_GRANTS)


@dataclass(frozen=True)
class Identity:
    """The caller of one execution. Frozen: an execution cannot change who it runs as."""

    id: str | None
    tenant: str
    auth_type: AuthType
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    name: str | None = None
    email: str | None = None
    issued_at: str | None = None
    expires_at: str | None = None
    grants: tuple[tuple[str, str], ...] = field(default=())
    # Where an anonymous call came from (the client address the HTTP front door resolved): anonymous callers
    # are many people, so their rate limit and sandbox share are per source. None from local transports.
    # Never shown to the script.
    source: str | None = None

    @classmethod
    def anonymous(cls, tenant: str = DEFAULT_TENANT) -> Identity:
        """The read-only caller who presented no credentials."""
        return cls(
            id=None, tenant=tenant, auth_type="anonymous", grants=tuple((action, "*") for action in READ_ACTIONS)
        )

    @classmethod
    def for_roles(
        cls,
        *,
        id: str,
        tenant: str,
        auth_type: AuthType,
        roles: tuple[str, ...],
        scopes: tuple[str, ...] = (),
        **extra: Any,
    ) -> Identity:
        """An authenticated identity whose grants come from its roles."""
        grants: list[tuple[str, str]] = []
        for role in roles:
            grants.extend(ROLE_GRANTS.get(role, ()))
        return cls(id=id, tenant=tenant, auth_type=auth_type, roles=roles, scopes=scopes, grants=tuple(grants), **extra)

    @property
    def is_anonymous(self) -> bool:
        return self.auth_type == "anonymous"

    def can(self, action: str, resource: str) -> bool:
        """True when one of the caller's grants covers (action, resource)."""
        return any(_matches(a, action) and _matches(r, resource) for a, r in self.grants)

    def current(self) -> dict[str, Any] | None:
        """The value of `user.current()` in a script."""
        if self.is_anonymous:
            return None
        out: dict[str, Any] = {"id": self.id, "tenant": self.tenant, "roles": list(self.roles)}
        if self.email:
            out["email"] = self.email
        if self.name:
            out["name"] = self.name
        return out

    def session(self) -> dict[str, Any]:
        """The value of `user.session()` in a script."""
        out: dict[str, Any] = {"id": self.id or "anonymous", "authType": self.auth_type, "scopes": list(self.scopes)}
        if self.issued_at:
            out["issuedAt"] = self.issued_at
        if self.expires_at:
            out["expiresAt"] = self.expires_at
        return out


def _matches(pattern: str, value: str) -> bool:
    return pattern == "*" or pattern == value
