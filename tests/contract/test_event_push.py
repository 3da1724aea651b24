"""The contracts of the two ports that push event work where no worker polls: EventTransport (what `send`
publishes, as its consumer receives it) and DeliveryDispatch (one message per delivery, naming it). Each runs
over the in-memory adapter and the AWS one under moto (EventBridge with a rule to an SQS queue, read back as
the events function reads it; SQS).

A backend joins by adding a factory that returns the port and a `take()` giving what its consumer receives.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from mcpdo.adapters.eventbridge_transport import EventBridgeTransport, event_from_eventbridge
from mcpdo.adapters.memory_events import MemoryDispatch, MemoryTransport
from mcpdo.adapters.sqs_dispatch import SqsDispatch, delivery_message
from mcpdo.ports import Delivery, DeliveryDispatch, Event, EventTransport, HandlerRef

from tests.support.aws import REGION, create_event_stack

pytestmark = pytest.mark.anyio


@dataclass
class Pushed:
    """A port and what its consumer receives, oldest first (each call takes what arrived since the last)."""

    port: Any
    take: Callable[[], list[Any]]


def _receive(queue_url: str) -> list[str]:
    sqs = boto3.client("sqs", region_name=REGION)
    bodies: list[str] = []
    while got := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in got:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def _memory_transport(request: pytest.FixtureRequest) -> Pushed:
    transport = MemoryTransport()
    return Pushed(transport, transport.take)


def _eventbridge_transport(request: pytest.FixtureRequest) -> Pushed:
    request.getfixturevalue("moto_endpoint")
    stack = create_event_stack()
    transport = EventBridgeTransport(boto3.client("events", region_name=REGION), bus_name=stack.bus)
    return Pushed(transport, lambda: [event_from_eventbridge(json.loads(b)) for b in _receive(stack.events_queue)])


def _memory_dispatch(request: pytest.FixtureRequest) -> Pushed:
    dispatch = MemoryDispatch()
    return Pushed(dispatch, dispatch.take)


def _sqs_dispatch(request: pytest.FixtureRequest) -> Pushed:
    request.getfixturevalue("moto_endpoint")
    queue = boto3.client("sqs", region_name=REGION).create_queue(QueueName=f"deliveries-{uuid.uuid4().hex[:12]}")
    url = queue["QueueUrl"]
    dispatch = SqsDispatch(boto3.client("sqs", region_name=REGION), queue_url=url)
    return Pushed(dispatch, lambda: [delivery_message(body) for body in _receive(url)])


TRANSPORTS = {"eventbridge": _eventbridge_transport, "memory": _memory_transport}
DISPATCHES = {"memory": _memory_dispatch, "sqs": _sqs_dispatch}


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> Pushed:
    return TRANSPORTS[request.param](request)


@pytest.fixture(params=sorted(DISPATCHES))
def dispatch(request: pytest.FixtureRequest) -> Pushed:
    return DISPATCHES[request.param](request)


def event(tenant: str = "acme", data: Any = None, depth: int = 0, type: str = "Order.created") -> Event:
    event_id = f"evt_{uuid.uuid4().hex}"
    return Event(event_id, type, data, "script", "2026-01-01T00:00:00.123Z", tenant, event_id, depth)


async def test_a_published_event_reaches_the_consumer_equal_to_what_was_sent(transport: Pushed) -> None:
    port: EventTransport = transport.port
    sent = event(data={"total": 1.5, "items": [{"sku": "é🙂", "n": None}], "nested": {"deep": [[1], [2]]}}, depth=3)
    await port.publish(sent)
    assert transport.take() == [sent]


async def test_events_keep_their_tenant_and_type_whatever_the_tenant_text(transport: Pushed) -> None:
    port: EventTransport = transport.port
    sent = [event(tenant=tenant) for tenant in ("acme", "acme_corp", "a/b.c#d%e", "ünï", "x" * 200)]
    for one in sent:
        await port.publish(one)
    received = transport.take()
    assert sorted((e.tenant, e.id) for e in received) == sorted((e.tenant, e.id) for e in sent)
    assert received == [next(e for e in sent if e.id == r.id) for r in received]


async def test_each_dispatched_delivery_is_one_message_naming_it(dispatch: Pushed) -> None:
    port: DeliveryDispatch = dispatch.port
    sent = event()
    deliveries = [
        Delivery(f"del_{index:03d}", sent, HandlerRef("acme", "https://acme.test/m", 1, index), "pending", 0, sent.time)
        for index in range(23)  # past one SQS batch of 10
    ]
    await port.dispatch(deliveries)
    assert sorted(dispatch.take()) == [d.id for d in deliveries]
    await port.dispatch(deliveries[:1])  # again: harmless, a claim hands it out once
    assert dispatch.take() == [deliveries[0].id]
    await port.close()
