"""Who is calling: anonymous, an API key or an OAuth subject; roles become grants, and `can` decides."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mcpdo.errors import InputError

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
# Actions only admins (`*:*`) or a custom role naming them have: reading the audit trail.
ADMIN_ACTIONS = ("audit",)

ANONYMOUS_TENANT = "public"

Grant = tuple[str, str]

# (action, resource) patterns each built-in role grants; "*" matches anything.
ROLE_GRANTS: dict[str, tuple[Grant, ...]] = {
    "admin": (("*", "*"),),
    "member": tuple((action, "*") for action in READ_ACTIONS + WRITE_ACTIONS),
    "reader": tuple((action, "*") for action in READ_ACTIONS),
}
KNOWN_ROLES = tuple(ROLE_GRANTS)


def parse_grant(text: str) -> Grant:
    """`action:resource` (`create:Order`, `read:*`, `*:*`) as a grant; InputError naming what is wrong."""
    action, sep, resource = text.strip().partition(":")
    if not sep or not action or not resource:
        raise InputError(f"A grant is 'action:resource' (like 'create:Order' or 'read:*'), got {text!r}")
    if action != "*" and action not in READ_ACTIONS + WRITE_ACTIONS + ADMIN_ACTIONS:
        known = ", ".join(READ_ACTIONS + WRITE_ACTIONS + ADMIN_ACTIONS)
        raise InputError(f"Unknown action {action!r} in grant {text!r}; actions: {known}, or *")
    return action, resource


@dataclass(frozen=True)
class Roles:
    """The roles a deployment knows: the built-in three plus custom ones from settings, each a set of grants."""

    grants: Mapping[str, tuple[Grant, ...]] = field(default_factory=lambda: dict(ROLE_GRANTS))

    @classmethod
    def with_custom(cls, custom: Mapping[str, Sequence[str]]) -> Roles:
        """Built-ins plus `custom` ({"support": ["read:*", "update:Ticket"]}); a built-in cannot be redefined."""
        table = dict(ROLE_GRANTS)
        for name, grants in custom.items():
            if name in ROLE_GRANTS:
                raise InputError(f"Role {name!r} is built in and cannot be redefined")
            if not name or not isinstance(grants, list | tuple) or not all(isinstance(g, str) for g in grants):
                raise InputError(f"Custom role {name!r} needs a list of 'action:resource' grants")
            table[name] = tuple(parse_grant(grant) for grant in grants)
        return cls(table)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.grants)

    def checked(self, roles: Sequence[str]) -> tuple[str, ...]:
        """`roles` when every one is known and there is at least one; else InputError listing the valid ones."""
        unknown = [role for role in roles if role not in self.grants]
        if unknown or not roles:
            shown = ", ".join(unknown) if unknown else "none given"
            raise InputError(f"Unknown role(s): {shown}; valid roles: {', '.join(self.names)}")
        return tuple(roles)

    def grants_for(self, roles: Sequence[str]) -> tuple[Grant, ...]:
        """Every grant of `roles`; a role no longer defined grants nothing."""
        return tuple(grant for role in roles for grant in self.grants.get(role, ()))


BUILT_IN_ROLES = Roles()


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
    grants: tuple[Grant, ...] = field(default=())
    # Where an anonymous call came from (the client address the HTTP front door resolved): anonymous callers
    # are many people, so their rate limit and sandbox share are per source. None from local transports.
    # Never shown to the script.
    source: str | None = None

    @classmethod
    def anonymous(cls, tenant: str = ANONYMOUS_TENANT) -> Identity:
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
        table: Roles = BUILT_IN_ROLES,
        **extra: Any,
    ) -> Identity:
        """An authenticated identity whose grants come from its roles (as `table` defines them)."""
        grants = table.grants_for(roles)
        return cls(id=id, tenant=tenant, auth_type=auth_type, roles=roles, scopes=scopes, grants=grants, **extra)

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


def anonymous_source(address: str) -> str:
    """Who one anonymous caller is, by where they call from: an IPv4 address, or the /64 of an IPv6 one (the
    block one subscriber is given: an address per request within it is still one caller). Canonical form,
    so two spellings of one address are one caller."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _matches(pattern: str, value: str) -> bool:
    return pattern == "*" or pattern == value
