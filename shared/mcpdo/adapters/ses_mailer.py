"""Mailer on Amazon SES (v2 SendEmail): sends once per idempotency key, and keeps each sent message in the
shared state table so that a second send with the same key sends nothing and `list` shows what went out.

Order: check the record, send, record.

1. A strongly consistent GetItem of the key's item: found, the message went out already and nothing is done.
2. SES SendEmail.
3. A PutItem on the condition that the item does not exist yet.

Crash behaviour: at least once, never zero. Nothing is recorded before SES has accepted the message, so a
crash, or a failed write, between 2 and 3 leaves no record: the delivery is retried and the message goes
out a second time. The other order (claim the key, then send) is at most once: a crash after the claim would
lose the mail for good, with a record claiming it was sent. A duplicate email is the lesser harm. Two sends
of one key racing each other both pass step 1 and both send; the condition keeps the first record.

Item layout (`sk` is always `MAIL`):

- `pk = "MAIL#<sha256 hex of the idempotency key>"`: fixed-size whatever the key (key attributes have size
  limits, and a write refused after the send would send again on every retry). Attributes: `key` (the
  idempotency key), `message` (the message as JSON text, as the local outbox keeps it), `sent_at`
  (ISO-8601 UTC), `ses_message_id`, `tenant`. Event ids (the keys) are unique across tenants.
- In the `gsi1` partition `gsi1pk = "MAIL#<tenant>"` (one tenant's mail) and the `gsi2` partition
  `gsi2pk = "MAIL"` (everyone's, for operators), both sorted by `"<sent_at>#<ulid>"`: `list` reads one
  newest first. The ULID orders messages sent in the same millisecond by one process as they were sent. A
  GSI partition takes about 1000 writes a second, far above any sending quota of SES.

From a message to SES (what the message may hold is `mcpdo.mail`'s rule, the same for every mailer):

- `to` (an address or a list of them): the recipients. `subject` and `body`: the subject and the plain-text
  body, UTF-8; a missing one is empty and any other value is sent as its JSON text, since the local outbox
  keeps any value and SES needs text.
- The sender is always the configured `sender`: SES sends only from verified identities, and the stack
  lets the function send as that one address only (`ses:FromAddress` in template.yaml), so a tenant cannot
  send as another. A message's `from` (an address) becomes its Reply-To, so answers still reach its author.
- Every other field (`cc`, `bcc`, `replyTo`, `eventId`, ...) is kept and listed, never sent: the mailers'
  contract has recipients in `to` only, and the local outbox does not send to the others either.

A message whose record would not fit in a DynamoDB item is refused before sending (LimitExceeded). SES
refusals that retrying cannot fix (MessageRejected, such as an unverified sender, an unverified
MAIL FROM domain, a paused or suspended account) are MailRejected, which the delivery runner does not retry;
anything else (throttling past botocore's retries, SES unavailable) is a StoreError and is retried.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from mcpdo.adapters.aws_calls import AwsCallFailed, aws_call
from mcpdo.adapters.dynamodb_table import ConditionFailed, DynamoTable, Item, key_part, text_value
from mcpdo.errors import LimitExceeded, McpdoError, NotConfigured
from mcpdo.ids import ulid
from mcpdo.inputs import check_listing_limit, quote
from mcpdo.mail import checked_message, listed
from mcpdo.timeparse import format_iso, now_ms

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client
    from mypy_boto3_sesv2.type_defs import EmailContentTypeDef

_SK = "MAIL"
_LISTED = "MAIL"
_CHARSET = "UTF-8"
# DynamoDB items hold 400 KB: the message and its key, with room for the other attributes and the names.
MAX_RECORD_BYTES = 380_000
# SES error codes that mean "not this message, not from here", whatever the number of attempts.
REFUSALS = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerifiedException",
        "AccountSuspendedException",
        "SendingPausedException",
        "BadRequestException",
        "NotFoundException",
    }
)
_HINTS = {
    "MessageRejected": (
        ": the sender must be a verified SES identity, and an account in the SES sandbox sends only to verified "
        "recipients"
    ),
    "MailFromDomainNotVerifiedException": ": the sender's custom MAIL FROM domain is not verified in SES",
}

log = logging.getLogger(__name__)


class MailRejected(McpdoError):
    """SES refused the message for a reason a retry cannot fix (the delivery becomes a dead letter at once)."""

    retryable: ClassVar[bool] = False

    def __init__(self, code: str, sender: str) -> None:
        hint = _HINTS.get(code, "")
        super().__init__(f"SES refused the email from {quote(sender)} ({code}){hint}")
        self.code = code


class SesMailer:
    """Mailer that sends through SES v2 and records each message in the state table (see the module docstring)."""

    def __init__(
        self, sesv2_client: SESV2Client, table: DynamoTable, *, sender: str, clock: Callable[[], int] = now_ms
    ) -> None:
        if not isinstance(sender, str) or "@" not in sender:
            raise NotConfigured(
                f"The SES mailer needs a sender address (a verified SES identity) to send from, got {sender!r}"
            )
        self._ses = sesv2_client
        self._table = table
        self._sender = sender
        self._clock = clock

    async def send(self, message: dict[str, Any], idempotency_key: str, *, tenant: str) -> None:
        """Send `message` unless a message with this key was sent already: check, send, record."""
        body = checked_message(message, idempotency_key)
        _check_record_size(body, idempotency_key)
        key = _at(idempotency_key)
        found = await self._table.call("get_item", Key=key, ConsistentRead=True, ProjectionExpression="pk")
        if "Item" in found:
            return
        message_id = await self._send(message)
        await self._record(key, idempotency_key, body, message_id, tenant)

    async def list(self, limit: int = 100, *, tenant: str | None = None) -> builtins.list[dict[str, Any]]:
        """The latest messages, newest first: the message fields plus `sentAt`, `idempotencyKey`, `tenant`."""
        check_listing_limit(limit)
        index, partition = ("gsi2", _LISTED) if tenant is None else ("gsi1", _tenant_partition(tenant))
        arguments: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": f"{index}pk = :listed",
            "ExpressionAttributeValues": {":listed": text_value(partition)},
            "ScanIndexForward": False,
        }
        items = await self._table.query_up_to(limit, **arguments)
        return [
            listed(json.loads(item["message"]["S"]), item["sent_at"]["S"], item["key"]["S"], item["tenant"]["S"])
            for item in items
        ]

    async def close(self) -> None:
        """Release the SES client and the shared table's client (closing it again is harmless)."""
        self._ses.close()
        await self._table.close()

    async def _send(self, message: dict[str, Any]) -> str:
        """Hand `message` to SES; its message id."""
        to = message["to"]
        author = message.get("from")
        reply_to = [author] if isinstance(author, str) and "@" in author and author != self._sender else []
        try:
            result = await aws_call(
                "SES",
                self._ses.send_email,
                FromEmailAddress=self._sender,
                Destination={"ToAddresses": [to] if isinstance(to, str) else list(to)},
                ReplyToAddresses=reply_to,
                Content=_content(message),
            )
        except AwsCallFailed as exc:
            if exc.code in REFUSALS:
                raise MailRejected(exc.code, self._sender) from exc
            raise
        return result.get("MessageId", "")

    async def _record(self, key: Item, idempotency_key: str, body: str, message_id: str, tenant: str) -> None:
        sent_at = format_iso(self._clock())
        order = text_value(f"{sent_at}#{ulid()}")
        item = {
            **key,
            "key": text_value(idempotency_key),
            "message": text_value(body),
            "sent_at": text_value(sent_at),
            "ses_message_id": text_value(message_id),
            "tenant": text_value(tenant),
            "gsi1pk": text_value(_tenant_partition(tenant)),
            "gsi1sk": order,
            "gsi2pk": text_value(_LISTED),
            "gsi2sk": order,
        }
        try:
            await self._table.call("put_item", Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ConditionFailed:
            # A concurrent send of the same key recorded first: both went out (at least once); keep its record.
            log.info("email %s was sent concurrently by another delivery", idempotency_key)


def _tenant_partition(tenant: str) -> str:
    return f"{_LISTED}#{key_part(tenant)}"


def _at(idempotency_key: str) -> Item:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    return {"pk": text_value(f"MAIL#{digest}"), "sk": text_value(_SK)}


def _check_record_size(body: str, idempotency_key: str) -> None:
    size = len(body.encode()) + len(idempotency_key.encode())
    if size > MAX_RECORD_BYTES:
        raise LimitExceeded(
            "email size",
            f"This email is {size} bytes as JSON with its key: the SES mailer keeps each sent email in the state "
            f"table, whose items hold at most 400 KB ({MAX_RECORD_BYTES} bytes for the email); nothing was sent",
        )


def _content(message: dict[str, Any]) -> EmailContentTypeDef:
    return {
        "Simple": {
            "Subject": {"Data": _text(message.get("subject")), "Charset": _CHARSET},
            "Body": {"Text": {"Data": _text(message.get("body")), "Charset": _CHARSET}},
        }
    }


def _text(value: object) -> str:
    """A subject or body as SES takes it: text as is, nothing as empty, any other JSON value as its JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
