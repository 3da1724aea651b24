"""Tools for attacking the AWS event path under moto (see tests/security/test_aws_event_path.py).

- Talking to the MCP function as a caller: `call` / `do` (one `do` tool call through the fake gateway).
- Driving the queues by hand: `drain` (poll every source until every queue is empty, in flight included),
  `take` (receive messages to hand over yourself), `sqs_record` / `forged_record` (the records Lambda's
  SQS event source would build), `take_set_aside` (what the function put in the dead-letter queue, with the
  reason it gave).
- Seeing what belongs to one tenant: `tenant_items` (every item of the state table that is the tenant's,
  by the adapters' key layouts), `tenant_schedules` (its Scheduler schedules, by their names).
- Watching what leaves the process: `LogCapture` (every log record of the `mcpdo` loggers and the root
  logger, with its extra fields and traceback), `SesSpy` (every SES SendEmail call of a client, with its
  arguments; it can make chosen recipients fail).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx

from tests.support.aws import REGION
from tests.support.sqs_source import SqsEventSource

# -- calling the MCP function ------------------------------------------------------------------------------


def call(gateway_url: str, key: str, **arguments: Any) -> tuple[bool, Any]:
    """(is_error, value) of one `do` call; the value is the tool's JSON value, or its text on an error."""
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "do", "arguments": arguments}}
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {key}",
    }
    response = httpx.post(gateway_url, content=json.dumps(message), headers=headers, timeout=120)
    result = response.json()["result"]
    text = result["content"][0]["text"]
    if result.get("isError"):
        return True, text
    return False, None if text == "undefined" else json.loads(text)


def do(gateway_url: str, key: str, **arguments: Any) -> Any:
    """The value of one `do` call (AssertionError on a tool error)."""
    is_error, value = call(gateway_url, key, **arguments)
    assert not is_error, value
    return value


# -- queues --------------------------------------------------------------------------------------------------


def _sqs() -> Any:
    return boto3.client("sqs", region_name=REGION)


def queue_counts(queue_url: str) -> tuple[int, int, int]:
    """(visible, in flight, delayed) messages of a queue, as SQS counts them."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    got = _sqs().get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    visible, in_flight, delayed = (int(got.get(name, 0)) for name in names)
    return visible, in_flight, delayed


def drain(sources: Sequence[SqsEventSource], timeout: float = 60.0) -> int:
    """Poll every source until all their queues are empty (nothing visible, in flight or delayed: retries
    waiting out a back-off count as in flight); the messages handed over. AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    handed = 0
    while True:
        polled = sum(source.run_once() for source in sources)
        handed += polled
        if polled:
            continue
        if all(queue_counts(source.queue_url) == (0, 0, 0) for source in sources):
            return handed
        if time.monotonic() > deadline:
            counts = {source.queue_url.rsplit("/", 1)[-1]: queue_counts(source.queue_url) for source in sources}
            raise AssertionError(f"the queues did not drain within {timeout} s: {counts}")
        time.sleep(0.05)


def take(queue_url: str, *, visibility: int = 30, at_least: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Receive every visible message of a queue (at least `at_least`), hidden for `visibility` seconds: the
    caller hands them over and deletes them, or lets them come back."""
    deadline = time.monotonic() + timeout
    taken: list[dict[str, Any]] = []
    while True:
        got = (
            _sqs()
            .receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=visibility, AttributeNames=["All"]
            )
            .get("Messages", [])
        )
        taken += got
        if not got and len(taken) >= at_least:
            return taken
        if not got:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {at_least} messages arrived within {timeout} s")
            time.sleep(0.05)


def delete(queue_url: str, messages: Sequence[dict[str, Any]]) -> None:
    for message in messages:
        _sqs().delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def show_again(queue_url: str, messages: Sequence[dict[str, Any]]) -> None:
    """Make received messages visible at once (clean-up after a test that left them hidden)."""
    for message in messages:
        _sqs().change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )


def sqs_record(message: dict[str, Any], *, copy: str = "") -> dict[str, Any]:
    """The SQS event record of a received message (`copy` makes a second record of the same message)."""
    return {
        "messageId": message["MessageId"] + copy,
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "awsRegion": REGION,
    }


def forged_record(body: str, message_id: str) -> dict[str, Any]:
    """A record whose message never was on any queue (its receipt handle is no queue's)."""
    return {
        "messageId": message_id,
        "receiptHandle": f"forged-receipt-{message_id}",
        "body": body,
        "attributes": {},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "awsRegion": REGION,
    }


def failures(response: dict[str, Any]) -> set[str]:
    """The message ids a partial batch response hands back (and a check of its shape)."""
    assert set(response) == {"batchItemFailures"}, response
    for item in response["batchItemFailures"]:
        assert set(item) == {"itemIdentifier"}, item  # nothing but the id goes back to Lambda
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}


@dataclass(frozen=True)
class SetAside:
    body: str
    reason: str


def take_set_aside(queue_url: str) -> list[SetAside]:
    """Every message in the dead-letter queue now, with the reason the function gave (deleted: each test
    reads only what it caused)."""
    taken: list[SetAside] = []
    while True:
        got = (
            _sqs()
            .receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30, MessageAttributeNames=["All"]
            )
            .get("Messages", [])
        )
        if not got:
            return taken
        for message in got:
            reason = message.get("MessageAttributes", {}).get("reason", {}).get("StringValue", "")
            taken.append(SetAside(message["Body"], reason))
        delete(queue_url, got)


# -- what belongs to a tenant --------------------------------------------------------------------------------


def _key_part(tenant: str) -> str:
    return tenant.replace("%", "%25").replace("#", "%23")


def _is_tenants(item: dict[str, Any], tenant: str) -> bool:
    if item.get("tenant", {}).get("S") == tenant:
        return True  # events, deliveries, runs, modules, subscriptions, schedule sets, keys
    pk = item["pk"]["S"]
    encoded = _key_part(tenant)
    if pk in (f"SUBREV#{encoded}", f"RUN#{tenant}"):
        return True
    if any(pk.startswith(f"{kind}#{encoded}#") for kind in ("MOD", "SUB", "SUBSET", "SCHEDSET")):
        return True
    # Records: `ENT#<tenant>#<type>`, and type names have no '#'; so the rest after the tenant is one type.
    entity = f"ENT#{tenant}#"
    return pk.startswith(entity) and "#" not in pk[len(entity) :]


def tenant_items(table: str, tenant: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every item of the state table that belongs to `tenant`, by (pk, sk)."""
    client = boto3.client("dynamodb", region_name=REGION)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page.get("Items", []):
            if _is_tenants(item, tenant):
                found[item["pk"]["S"], item["sk"]["S"]] = item
    return found


def table_items(table: str, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The items of the state table that `keep` keeps."""
    client = boto3.client("dynamodb", region_name=REGION)
    pages = client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    return [item for page in pages for item in page.get("Items", []) if keep(item)]


def tenant_schedules(group: str, name_prefix: str) -> dict[str, dict[str, Any]]:
    """The Scheduler schedules of one module (names start with `name_prefix`), as Scheduler holds them."""
    client = boto3.client("scheduler", region_name=REGION)
    names = [s["Name"] for s in client.list_schedules(GroupName=group, NamePrefix=name_prefix)["Schedules"]]
    kept = ("ScheduleExpression", "ScheduleExpressionTimezone", "State", "Target", "StartDate")
    return {
        name: {k: v for k, v in client.get_schedule(GroupName=group, Name=name).items() if k in kept} for name in names
    }


# -- what leaves the process -----------------------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(level=logging.DEBUG)
        self._into = into

    def emit(self, record: logging.LogRecord) -> None:
        # Everything any formatter could print: the message, its arguments, the extra fields, the traceback.
        parts = [str(record.msg), repr(record.args), repr(record.__dict__)]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        self._into.append("\n".join(parts))


@dataclass
class LogCapture:
    """Every log record of the `mcpdo` loggers (the functions' Powertools logger is `mcpdo`, the service name)
    and of the root logger, while the block runs."""

    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def capture_logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    handler = _Collect(capture.lines)
    loggers = [logging.getLogger("mcpdo"), logging.getLogger()]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
    logging.getLogger("mcpdo").setLevel(logging.DEBUG)  # what LOG_LEVEL=DEBUG would show, too
    try:
        yield capture
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


class SesSpy:
    """Wraps `client.send_email`: records every call's arguments, and raises `failing[recipient]` (an
    exception) instead of sending for a message to that recipient."""

    def __init__(self, client: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failing: dict[str, BaseException] = {}
        self._client = client
        self._send = client.send_email

    def __enter__(self) -> SesSpy:
        def send_email(**arguments: Any) -> Any:  # named as the client's method: errors name the operation
            return self._spy(**arguments)

        self._client.send_email = send_email
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.send_email = self._send

    def _spy(self, **arguments: Any) -> Any:
        self.calls.append(arguments)
        for recipient in arguments.get("Destination", {}).get("ToAddresses", []):
            if recipient in self.failing:
                raise self.failing[recipient]
        return self._send(**arguments)

    def to(self, recipient: str) -> list[dict[str, Any]]:
        """The calls that named `recipient` as a To address."""
        return [c for c in self.calls if recipient in c.get("Destination", {}).get("ToAddresses", [])]
