"""The one rule every SDK call passes through before it reaches a port."""

from __future__ import annotations

from mcpdo.errors import AuthenticationRequired, PermissionDenied
from mcpdo.identity import READ_ACTIONS, Identity


def authorize(identity: Identity, action: str, resource: str) -> None:
    """Anonymous callers may only read; everyone else needs a grant for (action, resource)."""
    if identity.is_anonymous and action not in READ_ACTIONS:
        raise AuthenticationRequired()
    if not identity.can(action, resource):
        raise PermissionDenied(action, resource)
