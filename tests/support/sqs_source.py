"""Lambda's side of the events and schedules functions, by hand: load a function as Lambda does (its INIT
with the environment the template gives it), and poll a queue into it as Lambda's SQS event source would.

`SqsEventSource.run_once()` is one poll: up to 10 messages handed over as one SQS event, the ones not named
in `batchItemFailures` deleted, the others left to come back when their visibility ends (the function may
have set it: a retry's back-off). `pump` polls several sources until a condition holds, with a bound.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3

from tests.support.aws import REGION, environment
from tests.support.sync import wait_for

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


class FunctionContext:
    """Lambda's context object as Powertools and the functions read it; `remaining_ms` is fixed."""

    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    log_stream_name = "2026/12/02/[$LATEST]0"

    def __init__(self, name: str, remaining_ms: int = 60_000) -> None:
        self.function_name = f"mcpdo-{name}"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:mcpdo-{name}"
        self.log_group_name = f"/aws/lambda/mcpdo-{name}"
        self.aws_request_id = str(uuid.uuid4())
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


def load_function(name: str, variables: Mapping[str, str]) -> ModuleType:
    """Import `functions/<name>/app.py` as Lambda loads it (a file, under its own name), running its INIT."""
    spec = importlib.util.spec_from_file_location(f"mcpdo_function_{name}_app", FUNCTIONS / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with environment(variables):
        spec.loader.exec_module(module)
    return module


class SqsEventSource:
    """One queue polled into one function's handler."""

    def __init__(self, queue_url: str, handler: Callable[[dict[str, Any], Any], dict[str, Any]], name: str) -> None:
        self.queue_url = queue_url
        self._handler = handler
        self._name = name
        self._sqs = boto3.client("sqs", region_name=REGION)
        arn = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
        self._arn = arn["QueueArn"]
        self.handed_over = 0

    def run_once(self) -> int:
        """One poll: the messages received (0 when none is visible)."""
        received = self._sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not received:
            return 0
        response = self._handler({"Records": [self._record(m) for m in received]}, FunctionContext(self._name))
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        for message in received:
            if message["MessageId"] not in failed:
                self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        self.handed_over += len(received)
        return len(received)

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self._arn,
            "awsRegion": REGION,
        }


def pump(sources: Sequence[SqsEventSource], until: Callable[[], Any], timeout: float = 30.0) -> None:
    """Poll every source in turn until `until()` holds; AssertionError after `timeout` seconds."""
    wait_for(until, timeout, step=lambda: sum(source.run_once() for source in sources))


def queue_bodies(queue_url: str) -> list[str]:
    """Every message body visible in a queue now (each then hidden for 30 s: for reading a queue at the end)."""
    sqs = boto3.client("sqs", region_name=REGION)
    bodies: list[str] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30).get("Messages", [])
        if not got:
            return bodies
        bodies += [message["Body"] for message in got]
