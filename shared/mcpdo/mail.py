"""What every Mailer accepts: an email with recipients, a non-empty idempotency key, JSON of bounded size."""

from __future__ import annotations

import json
from typing import Any

from mcpdo.errors import InputError
from mcpdo.inputs import show

MAX_MESSAGE_BYTES = 1_000_000


def checked_message(message: object, idempotency_key: object) -> str:
    """The message as JSON text, once it is an email with at least one recipient in `to`; else InputError."""
    if not isinstance(message, dict):
        raise InputError(f"An email must be an object like {{ to, subject, body }}, got {show(message)}")
    to = message.get("to")
    recipients = to if isinstance(to, list) else [to]
    if to is None or not recipients or not all(isinstance(item, str) and "@" in item for item in recipients):
        raise InputError(f"An email needs 'to': a recipient address or a list of them, got {show(to)}")
    if not isinstance(idempotency_key, str) or not idempotency_key:
        raise InputError(f"An email needs a non-empty idempotency key, got {show(idempotency_key)}")
    try:
        body = json.dumps(message, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"An email message must be JSON-serializable: {exc}") from exc
    try:
        size = len(body.encode())
    except UnicodeEncodeError as exc:
        raise InputError("An email message must be valid Unicode text (it holds a lone surrogate)") from exc
    if size > MAX_MESSAGE_BYTES:
        raise InputError(f"An email message must be at most {MAX_MESSAGE_BYTES} bytes as JSON")
    return body


def listed(message: dict[str, Any], sent_at: str, idempotency_key: str, tenant: str) -> dict[str, Any]:
    """How a sent message is listed: its fields plus `sentAt`, `idempotencyKey` and the `tenant` it belongs to."""
    return {**message, "sentAt": sent_at, "idempotencyKey": idempotency_key, "tenant": tenant}
