"""QueueMessages on SQS: what a message of the events function's two queues says, and what it does with one
besides deleting it.

- `read`: the events queue holds EventBridge envelopes (the rule's target), the deliveries queue the
  messages `SqsDispatch` sends; their parsers live with the adapters that write them.

- `delay`: a failed attempt waits out its back-off as the message's visibility timeout (at most SQS's 12
  hours), so the retry is the same message coming back, not a new one (each attempt is one receive).
- `requeue`: a receive that was no attempt (the invocation had no time left, or the delivery is not due
  yet) sends a fresh copy instead, so SQS's receive count, which drives the redrive to the dead-letter
  queue, counts attempts only and never moves aside a delivery that did not fail.
- `set_aside`: the raw body goes to the stack's dead-letter queue, with the reason as a message attribute;
  the delivery's state (attempts, last error, replay) is in the delivery store, this is the evidence.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from mcpdo.adapters.aws_calls import aws_call
from mcpdo.adapters.eventbridge_transport import event_from_eventbridge
from mcpdo.adapters.sqs_dispatch import delivery_message, message_group
from mcpdo.errors import InputError
from mcpdo.ports import Event

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

MAX_VISIBILITY_SECONDS = 43_200  # SQS: a message stays hidden at most 12 hours
MAX_DELAY_SECONDS = 900  # SQS: a new message is delayed at most 15 minutes
MAX_REASON_LENGTH = 1_000
# SQS's own limit on a message (an EventBridge entry is at most 256 KB): anything longer is not ours.
MAX_MESSAGE_CHARS = 1024 * 1024


class SqsMessages:
    """The received messages of the deliveries queue (`queue_url`) and the events queue, and the dead-letter
    queue they are set aside in."""

    def __init__(self, client: SQSClient, *, queue_url: str, dead_letter_queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url
        self._dead_letter_queue_url = dead_letter_queue_url

    def read(self, body: str) -> Event | str:
        """An events-queue message (an EventBridge envelope: the event to route) or a deliveries-queue message
        (the id of the delivery to run); InputError for anything else."""
        if len(body) > MAX_MESSAGE_CHARS:
            raise InputError(f"The message body is over {MAX_MESSAGE_CHARS} characters: not one of ours")
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise InputError("The message body is not JSON (or nested too deep)") from exc
        if isinstance(parsed, dict) and "detail-type" in parsed:
            return event_from_eventbridge(parsed)
        return delivery_message(body)

    async def delay(self, receipt: str, seconds: float) -> None:
        visibility = min(MAX_VISIBILITY_SECONDS, max(0, math.ceil(seconds)))
        await self._call(
            "change_message_visibility",
            QueueUrl=self._queue_url,
            ReceiptHandle=receipt,
            VisibilityTimeout=visibility,
        )

    async def requeue(self, body: str, seconds: float) -> None:
        delay = min(MAX_DELAY_SECONDS, max(0, math.ceil(seconds)))
        # The same message group as the dispatched message: the tenant (SQS fair queues).
        await self._call(
            "send_message",
            QueueUrl=self._queue_url,
            MessageBody=body,
            DelaySeconds=delay,
            **message_group(body),
        )

    async def set_aside(self, body: str, reason: str) -> None:
        await self._call(
            "send_message",
            QueueUrl=self._dead_letter_queue_url,
            MessageBody=body,
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:MAX_REASON_LENGTH] or "-"}},
        )

    async def _call(self, operation: str, **arguments: Any) -> None:
        await aws_call("SQS", getattr(self._client, operation), **arguments)
