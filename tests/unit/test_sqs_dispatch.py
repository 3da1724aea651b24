"""SqsDispatch and delivery_message: messages on a real queue under moto, failed batch entries retried under
botocore's Stubber (moto never fails one), and queue bodies that must not be trusted."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import given, settings
from hypothesis import strategies as st
from mcpdo.adapters.sqs_dispatch import SqsDispatch, delivery_message, group_id
from mcpdo.errors import InputError, StoreError
from mcpdo.ports import Delivery, Event, HandlerRef

from tests.support.aws import REGION

pytestmark = pytest.mark.anyio

EVENT = Event(
    id="evt_01jq3m8k2c7d9e4f6g0h1j2k3m",
    type="Order.created",
    data={},
    source="script",
    time="2026-01-01T00:00:00.000Z",
    tenant="acme",
    correlation_id="evt_01jq3m8k2c7d9e4f6g0h1j2k3m",
)
QUEUE_URL = "https://sqs.test/123456789012/deliveries"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _deliveries(count: int) -> list[Delivery]:
    return [
        Delivery(
            id=f"del_{index:04d}",
            event=EVENT,
            handler=HandlerRef("acme", "mod_orders", 1, index),
            status="pending",
            attempts=0,
            next_attempt_at=EVENT.time,
        )
        for index in range(count)
    ]


def _receive_all(queue_url: str) -> list[str]:
    sqs = boto3.client("sqs", region_name=REGION)
    bodies: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        bodies.extend(message["Body"] for message in messages)


async def test_25_deliveries_become_25_messages_naming_them(moto_endpoint: str) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName=f"deliveries-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    dispatch = SqsDispatch(boto3.client("sqs", region_name=REGION), queue_url=queue_url)
    deliveries = _deliveries(25)
    await dispatch.dispatch(deliveries)
    bodies = _receive_all(queue_url)
    assert sorted(delivery_message(body) for body in bodies) == [d.id for d in deliveries]
    assert json.loads(bodies[0]).keys() == {"deliveryId", "eventId", "tenant"}
    assert {(json.loads(b)["eventId"], json.loads(b)["tenant"]) for b in bodies} == {(EVENT.id, "acme")}
    await dispatch.dispatch([])  # nothing to send, no call
    await dispatch.close()


async def test_an_unknown_queue_is_a_store_error_naming_sqs(moto_endpoint: str) -> None:
    dispatch = SqsDispatch(boto3.client("sqs", region_name=REGION), queue_url=f"{moto_endpoint}/123456789012/none")
    with pytest.raises(StoreError, match=r"^SQS send_message_batch failed: ") as raised:
        await dispatch.dispatch(_deliveries(1))
    assert moto_endpoint not in raised.value.text


# --- failed entries (Stubber) ----------------------------------------------------------------------------


def _stubbed(*answers: tuple[list[str], dict[str, Any]]) -> tuple[SqsDispatch, Stubber]:
    """A dispatch whose client answers each call in turn; each answer names the entry ids it expects."""
    client = boto3.client(
        "sqs", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x", endpoint_url="https://sqs.test"
    )
    stubber = Stubber(client)
    for ids, answer in answers:
        expected = {"QueueUrl": QUEUE_URL, "Entries": [_entry(entry_id) for entry_id in ids]}
        stubber.add_response("send_message_batch", answer, expected)
    stubber.activate()
    return SqsDispatch(client, queue_url=QUEUE_URL, backoff_seconds=0.001), stubber


def _entry(entry_id: str) -> dict[str, str]:
    body = {"deliveryId": f"del_{int(entry_id):04d}", "eventId": EVENT.id, "tenant": "acme"}
    text = json.dumps(body, separators=(",", ":"))
    return {"Id": entry_id, "MessageBody": text, "MessageGroupId": group_id("acme")}


def _answer(taken: list[str], failed: dict[str, bool]) -> dict[str, Any]:
    return {
        "Successful": [{"Id": i, "MessageId": f"m{i}", "MD5OfMessageBody": "0" * 32} for i in taken],
        "Failed": [
            {"Id": i, "SenderFault": sender, "Code": "InvalidParameterValue" if sender else "InternalError"}
            for i, sender in failed.items()
        ],
    }


async def test_entries_a_batch_did_not_take_are_sent_again() -> None:
    dispatch, stubber = _stubbed(
        ([str(i) for i in range(3)], _answer(["0"], {"1": False, "2": False})),
        (["1", "2"], _answer(["2"], {"1": False})),
        (["1"], _answer(["1"], {})),
    )
    await dispatch.dispatch(_deliveries(3))
    stubber.assert_no_pending_responses()


async def test_entries_never_taken_are_a_store_error_naming_sqs_the_code_and_deliveries() -> None:
    all_ten = [str(i) for i in range(10)]
    dispatch, stubber = _stubbed(
        (all_ten, _answer(all_ten[1:], {"0": False})),
        *[(["0"], _answer([], {"0": False}))] * 3,
    )
    with pytest.raises(StoreError) as raised:
        await dispatch.dispatch(_deliveries(12))  # the second batch is never sent
    assert raised.value.text == "SQS did not accept 1 delivery messages (InternalError), e.g. del_0000"
    stubber.assert_no_pending_responses()


async def test_a_sender_fault_is_not_retried() -> None:
    dispatch, stubber = _stubbed((["0", "1"], _answer(["0"], {"1": True})))
    with pytest.raises(StoreError, match=r"\(InvalidParameterValue\), e.g. del_0001$"):
        await dispatch.dispatch(_deliveries(2))
    stubber.assert_no_pending_responses()


# --- bodies from a queue -------------------------------------------------------------------------------

GOOD = {"deliveryId": "del_01jq3m8k2c7d9e4f6g0h1j2k3m", "eventId": EVENT.id, "tenant": "acme"}


def test_a_well_formed_body_gives_the_delivery_id() -> None:
    assert delivery_message(json.dumps(GOOD)) == GOOD["deliveryId"]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"{}", "the body must be JSON text, got a bytes"),
        ("", "the body is not JSON"),
        ("{'deliveryId': 1}", "the body is not JSON"),
        ("[" * 4000, "the body is not JSON (maximum recursion depth exceeded"),
        ("[" * 10_000, "the body is 10000 characters, more than a delivery message (4096)"),
        ("[1]", "the body must be an object, got an array"),
        ('"del_1"', "the body must be an object, got 'del_1'"),
        (json.dumps({**GOOD, "deliveryId": None}), "'deliveryId' must be a non-empty string of letters"),
        (json.dumps({**GOOD, "deliveryId": "del 1"}), "'deliveryId' must be a non-empty string of letters"),
        (json.dumps({**GOOD, "deliveryId": "d" * 129}), "(at most 128)"),
        (json.dumps({"deliveryId": "del_1", "tenant": "acme"}), "'eventId' must be a non-empty string"),
        (json.dumps({**GOOD, "tenant": 3}), "'tenant' must be a non-empty string, got 3"),
        (json.dumps({**GOOD, "tenant": "a\nb"}), "'tenant' 'a\\nb' contains a control character"),
    ],
)
def test_malformed_bodies_are_refused_with_what_is_wrong(body: Any, text: str) -> None:
    with pytest.raises(InputError) as raised:
        delivery_message(body)
    assert raised.value.text.startswith("Malformed delivery message: ")
    assert text in raised.value.text


@settings(max_examples=300)
@given(st.text(max_size=200) | st.from_regex(r'\{"deliveryId": ?"[^"]*"(, ?"[a-zA-Z]+": ?[^,}]*)*\}'))
def test_random_bodies_are_a_delivery_id_or_an_input_error(body: str) -> None:
    try:
        delivery_message(body)
    except InputError as exc:
        assert exc.text.startswith("Malformed delivery message: ")


def test_each_tenant_gets_a_valid_message_group_of_its_own() -> None:
    tenants = ["acme", "acme ", "ACME", "ac/me", "é" * 300, "a#b%c"]
    groups = [group_id(tenant) for tenant in tenants]
    assert len(set(groups)) == len(tenants)
    assert all(len(group) <= 128 and group.isascii() and group.replace("-", "").isalnum() for group in groups)
