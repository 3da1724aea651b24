"""DeliveryDispatch on SQS: one message per pending delivery, naming it, for the queue's consumer to claim
and run; `delivery_message` reads such a message back.

Message body: JSON `{"deliveryId", "eventId", "tenant"}`. Only the delivery id matters to the consumer
(the delivery store holds the rest and hands the delivery out once per claim); the event id and tenant are
there for logs and for whoever reads the queue.

Deliveries go in SendMessageBatch calls of at most 10 (the SQS limit), one after another. Throttling of a
call itself is botocore's to retry; entries a batch did not take are ours: retried with back-off when SQS
says the fault is its own, a StoreError naming SQS and the codes when it says the fault is ours
(`SenderFault`) or after the last attempt. Messages already sent stay sent: dispatching them again is
harmless (the port says so), so the caller may simply dispatch the whole list again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mcpdo.adapters.aws_calls import ATTEMPTS, BACKOFF_SECONDS, attempts, aws_call
from mcpdo.errors import InputError, StoreError
from mcpdo.ids import check_id
from mcpdo.inputs import check_name, show
from mcpdo.ports import Delivery

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef, SendMessageBatchResultTypeDef

MAX_BATCH = 10  # entries in one SendMessageBatch
MAX_BODY_CHARS = 4096  # a real body is ~150 characters; anything far longer is not ours
_MALFORMED = "Malformed delivery message: "

log = logging.getLogger(__name__)


class SqsDispatch:
    """Sends one message per delivery to the queue at `queue_url`."""

    def __init__(
        self,
        sqs_client: SQSClient,
        *,
        queue_url: str,
        attempts: int = ATTEMPTS,
        backoff_seconds: float = BACKOFF_SECONDS,
    ) -> None:
        if not queue_url:
            raise ValueError("queue_url must name the delivery queue")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._client = sqs_client
        self._queue_url = queue_url
        self._attempts = attempts
        self._backoff = backoff_seconds

    async def dispatch(self, deliveries: Sequence[Delivery]) -> None:
        """Send one message per delivery; returns once SQS holds them all (StoreError otherwise)."""
        for start in range(0, len(deliveries), MAX_BATCH):
            await self._send_batch(deliveries[start : start + MAX_BATCH])

    async def _send_batch(self, batch: Sequence[Delivery]) -> None:
        pending = {str(index): _entry(str(index), delivery) for index, delivery in enumerate(batch)}
        delivery_ids = {str(index): delivery.id for index, delivery in enumerate(batch)}
        codes: set[str] = set()
        async for attempt in attempts(self._attempts, self._backoff):
            result = await aws_call(
                "SQS", self._client.send_message_batch, QueueUrl=self._queue_url, Entries=list(pending.values())
            )
            pending, codes, permanent = _unsent(pending, result)
            if not pending:
                return
            log.warning("SQS did not take %d messages (attempt %d): %s", len(pending), attempt + 1, codes)
            if permanent:
                break
        named = ", ".join(delivery_ids[entry_id] for entry_id in list(pending)[:3])
        raise StoreError(
            f"SQS did not accept {len(pending)} delivery messages ({', '.join(sorted(codes))}), e.g. {named}"
        )

    async def close(self) -> None:
        """Release the client's connections."""
        self._client.close()


def _entry(entry_id: str, delivery: Delivery) -> SendMessageBatchRequestEntryTypeDef:
    body = {"deliveryId": delivery.id, "eventId": delivery.event.id, "tenant": delivery.handler.tenant}
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return {"Id": entry_id, "MessageBody": text, "MessageGroupId": group_id(delivery.handler.tenant)}


def group_id(tenant: str) -> str:
    """The message group of a tenant's deliveries. On a standard queue a message group makes SQS a fair
    queue: a tenant with a backlog does not hold back the messages of tenants without one. A digest,
    because group ids allow only 128 ASCII characters and tenants are any text."""
    return "t-" + hashlib.sha256(tenant.encode()).hexdigest()[:40]


def message_group(body: str) -> dict[str, str]:
    """`{"MessageGroupId": ...}` for a delivery message sent again (its tenant's group), or {} for a body
    without a tenant."""
    try:
        tenant = json.loads(body).get("tenant")
    except (ValueError, AttributeError, RecursionError):
        return {}
    return {"MessageGroupId": group_id(tenant)} if isinstance(tenant, str) else {}


def _unsent(
    sent: dict[str, SendMessageBatchRequestEntryTypeDef], result: SendMessageBatchResultTypeDef
) -> tuple[dict[str, SendMessageBatchRequestEntryTypeDef], set[str], bool]:
    """The entries SQS did not take (an entry it neither took nor refused counts as refused), their error
    codes, and whether any refusal is the sender's fault (retrying it cannot help)."""
    taken = {item["Id"] for item in result.get("Successful", [])}
    refused = {item["Id"]: item for item in result.get("Failed", [])}
    unsent = {entry_id: entry for entry_id, entry in sent.items() if entry_id not in taken}
    codes = {(refused[entry_id].get("Code") or "error") if entry_id in refused else "no answer" for entry_id in unsent}
    permanent = any(refused[entry_id].get("SenderFault") for entry_id in unsent if entry_id in refused)
    return unsent, codes, permanent


def delivery_message(body: object) -> str:
    """The delivery id a queue message names; InputError saying what is wrong for anything else (the body
    comes from a queue: nothing in it is trusted)."""
    try:
        return _delivery_id(body)
    except InputError as exc:
        raise InputError(_MALFORMED + exc.message) from None


def _delivery_id(body: object) -> str:
    if not isinstance(body, str):
        raise InputError(f"the body must be JSON text, got {show(body)}")
    if len(body) > MAX_BODY_CHARS:
        raise InputError(f"the body is {len(body)} characters, more than a delivery message ({MAX_BODY_CHARS})")
    try:
        message: Any = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"the body is not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise InputError(f"the body must be an object, got {show(message)}")
    check_id(message.get("eventId"), "'eventId'")
    tenant = message.get("tenant")
    if not isinstance(tenant, str) or not tenant:
        raise InputError(f"'tenant' must be a non-empty string, got {show(tenant)}")
    check_name("'tenant'", tenant)
    return check_id(message.get("deliveryId"), "'deliveryId'")
