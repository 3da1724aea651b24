"""EventBridgeTransport and event_from_eventbridge: through a real bus, rule and queue under moto (the path a
published event takes in the cloud), the partial-failure retries under botocore's Stubber (moto never fails
an entry), the limits checked before any call, and envelopes from a queue that must not be trusted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from hypothesis import given, settings
from hypothesis import strategies as st
from mcpdo.adapters.eventbridge_transport import (
    MAX_ENTRY_BYTES,
    EventBridgeTransport,
    event_detail,
    event_from_eventbridge,
    source_of,
)
from mcpdo.errors import InputError, LimitExceeded, StoreError
from mcpdo.ports import Event

from tests.support.aws import REGION

pytestmark = pytest.mark.anyio

EVENT = Event(
    id="evt_01jq3m8k2c7d9e4f6g0h1j2k3m",
    type="Order.created",
    data={"name": "Zoë 😀 ✓", "lines": [{"n": 1, "price": 9.99}, None, True], "deep": {"a": {"b": ["ü", {"c": -0.5}]}}},
    source="script",
    time="2026-01-01T09:30:00.123Z",
    tenant="acme_corp",
    correlation_id="evt_01jq3m8k2c7d9e4f6g0h1j2k3m",
    depth=2,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- through moto: bus -> rule -> SQS ------------------------------------------------------------------


@pytest.fixture
def bus_to_queue(moto_endpoint: str) -> Iterator[tuple[str, str]]:
    """A custom bus whose rule (the template's prefix pattern) sends every mcpdo event to a fresh queue."""
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    name = f"mcpdo-{uuid.uuid4().hex[:12]}"
    events.create_event_bus(Name=name)
    rule_arn = events.put_rule(
        Name=f"{name}-route", EventBusName=name, EventPattern=json.dumps({"source": [{"prefix": "mcpdo."}]})
    )["RuleArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    events.put_targets(Rule=f"{name}-route", EventBusName=name, Targets=[{"Id": "deliveries", "Arn": queue_arn}])
    yield name, queue_url
    sqs.delete_queue(QueueUrl=queue_url)


def _drain(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


async def test_a_published_event_reaches_the_queue_and_reads_back_equal(bus_to_queue: tuple[str, str]) -> None:
    bus, queue_url = bus_to_queue
    transport = EventBridgeTransport(boto3.client("events", region_name=REGION), bus_name=bus)
    await transport.publish(EVENT)
    [envelope] = _drain(queue_url)
    assert envelope["source"] == "mcpdo.tenant/acme_5Fcorp" and envelope["detail-type"] == "Order.created"
    assert envelope["detail"] == event_detail(EVENT)
    assert event_from_eventbridge(envelope) == EVENT
    await transport.close()


async def test_events_of_another_prefix_do_not_match_the_rule(bus_to_queue: tuple[str, str]) -> None:
    bus, queue_url = bus_to_queue
    transport = EventBridgeTransport(boto3.client("events", region_name=REGION), bus_name=bus, source_prefix="other")
    await transport.publish(EVENT)
    assert _drain(queue_url) == []


async def test_an_unknown_bus_is_a_store_error_naming_eventbridge(moto_endpoint: str) -> None:
    transport = EventBridgeTransport(boto3.client("events", region_name=REGION), bus_name="no-such-bus")
    with pytest.raises(StoreError, match=r"^EventBridge put_events failed: ResourceNotFoundException$"):
        await transport.publish(EVENT)


# --- partial failures (Stubber) --------------------------------------------------------------------------


def _stubbed(*answers: dict[str, Any]) -> tuple[EventBridgeTransport, Stubber]:
    client = boto3.client(
        "events",
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        endpoint_url="https://events.test",
    )
    stubber = Stubber(client)
    for answer in answers:
        stubber.add_response("put_events", answer, {"Entries": [ANY]})
    stubber.activate()
    return EventBridgeTransport(client, bus_name="app-bus", backoff_seconds=0.001), stubber


def _refused(code: str) -> dict[str, Any]:
    return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": code, "ErrorMessage": "arn:aws:events:... said no"}]}


ACCEPTED = {"FailedEntryCount": 0, "Entries": [{"EventId": "11111111-2222"}]}


async def test_a_refused_entry_is_retried_until_the_bus_accepts_it() -> None:
    transport, stubber = _stubbed(_refused("InternalFailure"), _refused("ThrottlingException"), ACCEPTED)
    await transport.publish(EVENT)
    stubber.assert_no_pending_responses()


async def test_an_entry_refused_on_every_attempt_is_a_store_error_naming_the_code() -> None:
    transport, stubber = _stubbed(*[_refused("InternalFailure")] * 4)
    with pytest.raises(StoreError) as raised:
        await transport.publish(EVENT)
    assert raised.value.text == f"EventBridge did not accept event {EVENT.id} (Order.created): InternalFailure"
    stubber.assert_no_pending_responses()


async def test_a_permanent_refusal_is_not_retried_and_keeps_aws_details_out_of_the_text() -> None:
    transport, stubber = _stubbed(_refused("NotAuthorizedForSourceException"))
    with pytest.raises(StoreError, match=r"NotAuthorizedForSourceException$") as raised:
        await transport.publish(EVENT)
    assert "arn:" not in raised.value.text and "events.test" not in raised.value.text
    stubber.assert_no_pending_responses()


async def test_the_entry_carries_source_detail_type_detail_and_time() -> None:
    transport, _ = _stubbed()
    entry = transport.entry(EVENT)
    assert entry["EventBusName"] == "app-bus" and entry["DetailType"] == "Order.created"
    assert entry["Source"] == "mcpdo.tenant/acme_5Fcorp"
    assert json.loads(entry["Detail"]) == {**EVENT.to_json(), "depth": 2}
    assert entry["Time"].isoformat() == "2026-01-01T09:30:00.123000+00:00"  # type: ignore[union-attr]


# --- limits, before any call ----------------------------------------------------------------------------


async def test_an_event_over_256_kb_is_refused_before_calling_aws() -> None:
    transport, _ = _stubbed()  # no answers: any call would fail the test
    big = Event(**{**EVENT.__dict__, "data": {"blob": "x" * MAX_ENTRY_BYTES}})
    with pytest.raises(LimitExceeded, match="EventBridge events hold at most 256 KB") as raised:
        await transport.publish(big)
    assert raised.value.limit == "event size"
    # Multi-byte text counts in UTF-8 bytes, as EventBridge counts it.
    just_over = Event(**{**EVENT.__dict__, "data": "é" * (MAX_ENTRY_BYTES // 2)})
    with pytest.raises(LimitExceeded):
        await transport.publish(just_over)
    transport.entry(Event(**{**EVENT.__dict__, "data": "x" * (MAX_ENTRY_BYTES - 1000)}))  # fits


async def test_types_longer_than_a_detail_type_and_data_that_is_not_json_are_refused() -> None:
    transport, _ = _stubbed()
    with pytest.raises(InputError, match="longer than 128"):
        transport.entry(Event(**{**EVENT.__dict__, "type": "Order." + "x" * 130}))
    with pytest.raises(InputError, match="must be JSON"):
        transport.entry(Event(**{**EVENT.__dict__, "data": {"n": float("nan")}}))
    with pytest.raises(InputError, match="must be JSON"):
        transport.entry(Event(**{**EVENT.__dict__, "data": "\ud800"}))
    with pytest.raises(InputError, match="ISO-8601"):
        transport.entry(Event(**{**EVENT.__dict__, "time": "yesterday"}))


def test_a_prefix_that_cannot_start_a_source_is_refused() -> None:
    for prefix in ("", "aws", "aws.shop", "has space", "a..b", "x" * 65):
        with pytest.raises(ValueError, match="source_prefix"):
            EventBridgeTransport(boto3.client("events", region_name=REGION), bus_name="b", source_prefix=prefix)


# --- the Source encoding ------------------------------------------------------------------------------------

_SOURCE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./-_")


@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_sources_are_safe_bounded_and_distinct_per_tenant(first: str, second: str) -> None:
    for tenant in (first, second):
        source = source_of(tenant)
        assert len(source) <= 256 and set(source) <= _SOURCE_CHARS and source.startswith("mcpdo.")
    assert (source_of(first) == source_of(second)) == (first == second)


def test_a_tenant_too_long_to_encode_gets_its_digest() -> None:
    assert source_of("t" * 243) == "mcpdo.tenant/" + "t" * 243
    assert source_of("t" * 244).startswith("mcpdo.tenant-sha256/") and len(source_of("t" * 244)) == 84
    assert source_of("a/b é") == "mcpdo.tenant/a_2Fb_20_C3_A9"


# --- envelopes from a queue -----------------------------------------------------------------------------------


def _envelope(**changes: Any) -> dict[str, Any]:
    detail = {**event_detail(EVENT), **changes.pop("detail", {})}
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": EVENT.type,
        "source": source_of(EVENT.tenant),
        "account": "123456789012",
        "time": "2026-01-01T09:30:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
        **changes,
    }


def test_a_well_formed_envelope_gives_the_event() -> None:
    assert event_from_eventbridge(_envelope()) == EVENT
    assert event_from_eventbridge(_envelope(detail={"data": None})).data is None


@pytest.mark.parametrize(
    ("envelope", "text"),
    [
        ("not an object", "the envelope must be an object, got 'not an object'"),
        ([1, 2], "the envelope must be an object, got an array"),
        ({"detail-type": "Order.created"}, "'detail' must be an object, got null"),
        ({**_envelope(), "detail": "{}"}, "'detail' must be an object, got '{}'"),
        ({"detail": {"id": "evt_1"}}, "'detail' lacks type, data, source, time, tenant, correlationId, depth"),
        (_envelope(detail={"id": "evt 1"}), "event id must be a non-empty string of letters"),
        (_envelope(detail={"type": "Order"}), "Invalid event type 'Order'"),
        (_envelope(detail={"depth": -1}), "depth must be a non-negative integer, got -1"),
        (_envelope(detail={"depth": True}), "depth must be a non-negative integer, got True"),
        (_envelope(detail={"depth": "2"}), "depth must be a non-negative integer, got '2'"),
        (_envelope(detail={"time": "noon"}), "'detail.time' must be an ISO-8601 instant, got 'noon'"),
        (_envelope(detail={"tenant": ""}), "'detail.tenant' must be a non-empty string, got ''"),
        (_envelope(detail={"tenant": "a\x00b"}), "'detail.tenant' 'a\\x00b' contains a control character"),
        (_envelope(detail={"source": {"x": 1}}), "'detail.source' must be a non-empty string, got an object"),
        (_envelope(detail={"correlationId": 7}), "'detail.correlationId' must be a non-empty string"),
        (_envelope(**{"detail-type": "Order.deleted"}), "'detail-type' 'Order.deleted' is not the detail's type"),
        (_envelope(source="mcpdo.tenant/other"), "'source' 'mcpdo.tenant/other' is not the source of the detail's"),
        (_envelope(detail={"tenant": "other"}), "is not the source of the detail's tenant"),
    ],
)
def test_malformed_envelopes_are_refused_with_what_is_wrong(envelope: Any, text: str) -> None:
    with pytest.raises(InputError) as raised:
        event_from_eventbridge(envelope)
    assert raised.value.text.startswith("Malformed EventBridge event: ")
    assert text in raised.value.text


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_fields = st.sampled_from(["version", "id", "detail-type", "source", "time", "detail"])
_detail_fields = st.sampled_from(["id", "type", "data", "source", "time", "tenant", "correlationId", "depth"])


@settings(max_examples=300)
@given(_json)
def test_random_json_is_an_event_or_an_input_error(value: Any) -> None:
    try:
        event_from_eventbridge(value)
    except InputError as exc:
        assert exc.text.startswith("Malformed EventBridge event: ")


@settings(max_examples=300)
@given(_fields, _detail_fields, _json, st.booleans())
def test_an_envelope_with_one_field_replaced_is_an_event_or_an_input_error(
    field: str, detail_field: str, value: Any, in_detail: bool
) -> None:
    envelope = _envelope(detail={detail_field: value}) if in_detail else {**_envelope(), field: value}
    try:
        event = event_from_eventbridge(envelope)
    except InputError as exc:
        assert exc.text.startswith("Malformed EventBridge event: ")
    else:
        assert event_from_eventbridge(_envelope(**{"detail": event_detail(event)})) == event
