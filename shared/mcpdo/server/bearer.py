"""What every front door says about bearer credentials: the RFC 9728 document and the 401 challenge."""

from __future__ import annotations

from typing import Any

from mcpdo.errors import CredentialsRequired, Unauthorized


def protected_resource_metadata(resource: str, authorization_servers: tuple[str, ...]) -> dict[str, Any]:
    """The RFC 9728 document for `resource` (the URL clients use for MCP), the same on every front door."""
    return {
        "resource": resource,
        "resource_name": "mcpdo",
        "bearer_methods_supported": ["header"],
        "authorization_servers": list(authorization_servers),
    }


def challenge(exc: Unauthorized, resource_metadata: str) -> tuple[dict[str, str], str]:
    """The 401's body and `WWW-Authenticate` value (RFC 6750): no error code when no credential was sent."""
    if isinstance(exc, CredentialsRequired):
        return {"error": "unauthorized", "error_description": exc.message}, (
            f'Bearer resource_metadata="{resource_metadata}"'
        )
    # A header carries ASCII only: anything else in the message is escaped, and quotes cannot end the value.
    description = exc.message.replace("\\", "").replace('"', "'").encode("ascii", "backslashreplace").decode()
    return {"error": "invalid_token", "error_description": exc.message}, (
        f'Bearer error="invalid_token", error_description="{description}", resource_metadata="{resource_metadata}"'
    )
