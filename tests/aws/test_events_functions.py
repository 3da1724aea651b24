"""Events and schedules on AWS, under moto: the MCP function registers modules and publishes, the bus's rule
queues events, the events function routes them and runs the deliveries, the schedules function fires slots.

Nothing fires by itself in moto (no Lambda targets, no schedules): the tests drain the queues into the
functions as Lambda's SQS event source would (`tests.support.sqs_source`) and hand a schedule's own `Input`
to the schedules function, as Scheduler would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from mcpdo.adapters.sqs_dispatch import SqsDispatch
from mcpdo.errors import StoreError

from tests.support.aws import REGION, EventStack, create_event_stack, mcpdo_cli
from tests.support.gateway import FakeGateway, fake_gateway
from tests.support.sqs_source import FunctionContext, SqsEventSource, load_function, pump, queue_bodies

TENANT = "acme"
MAIL_FROM = "ops@acme.test"

ORDERS = """---
$id: https://acme.test/orders
$type: Workflow
---
on($.Order.placed, async (order, event) => {
  await db.create('Receipt', { order: order.id, total: order.total, event: event.id })
})
on('Order.*', async (order, event) => {
  await db.create('Seen', { type: event.type })
})
on($.Order.broken, async () => {
  await db.create('BrokenAttempt', {})
  throw new Error('kaput')
})
every('TZ=Europe/Paris 0 9 * * 1-5', async () => {
  await db.create('Tick', { at: new Date().toISOString() })
})
every('15m', async () => {})
"""

FEWER = """---
$id: https://acme.test/orders
$type: Workflow
---
on($.Order.placed, async (order) => {
  await db.create('ReceiptV2', { order: order.id })
})
every('TZ=Europe/Paris 30 9 * * 1-5', async () => {})
"""


@pytest.fixture(scope="module")
def stack(moto_endpoint: str) -> EventStack:
    ses = boto3.client("ses", region_name=REGION)
    ses.verify_email_identity(EmailAddress=MAIL_FROM)
    return create_event_stack()


def _env(stack: EventStack, function: str) -> dict[str, str]:
    # Retries after 1, 2, 4 ms (the queue rounds each up to a second); no X-Ray daemon here; no quota on the
    # admin key, which the tests poll with.
    quick = {"MCPDO_RETRY_BASE_MS": "1", "POWERTOOLS_TRACE_DISABLED": "true", "MCPDO_MAIL_FROM": MAIL_FROM}
    quick |= {"MCPDO_RATE_LIMIT_AUTHENTICATED": "0"}
    return {**stack.environment(function), **quick}


@pytest.fixture(scope="module")
def gateway(stack: EventStack) -> Iterator[FakeGateway]:
    with fake_gateway(_env(stack, "McpFunction")) as running:
        yield running


@pytest.fixture(scope="module")
def admin_key(stack: EventStack) -> str:
    done = mcpdo_cli(
        _env(stack, "McpFunction"), "keys", "create", "--name", "ops", "--tenant", TENANT, "--role", "admin"
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def events_function(stack: EventStack) -> Any:
    module = load_function("events", _env(stack, "EventsFunction"))
    yield module
    module.runtime.close()


@pytest.fixture(scope="module")
def schedules_function(stack: EventStack) -> Any:
    module = load_function("schedules", _env(stack, "SchedulesFunction"))
    yield module
    module.runtime.close()


@pytest.fixture(scope="module")
def sources(stack: EventStack, events_function: Any) -> list[SqsEventSource]:
    return [
        SqsEventSource(stack.events_queue, events_function.handler, "EventsFunction"),
        SqsEventSource(stack.deliveries_queue, events_function.handler, "EventsFunction"),
    ]


def do(gateway: FakeGateway, key: str, **arguments: Any) -> Any:
    """One `do` call through the MCP function; the tool's structured value (AssertionError on a tool error)."""
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "do", "arguments": arguments}}
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {key}",
    }
    response = httpx.post(gateway.url, content=json.dumps(call), headers=headers, timeout=60)
    result = response.json()["result"]
    assert not result.get("isError"), result["content"][0]["text"]
    return json.loads(result["content"][0]["text"])


def records(gateway: FakeGateway, key: str, type_name: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = do(gateway, key, script=f"await db.list('{type_name}')")
    return listed


def schedules(stack: EventStack) -> dict[str, dict[str, Any]]:
    client = boto3.client("scheduler", region_name=REGION)
    names = [s["Name"] for s in client.list_schedules(GroupName=stack.group)["Schedules"]]
    return {name: client.get_schedule(GroupName=stack.group, Name=name) for name in names}


@pytest.fixture(scope="module")
def registered(gateway: FakeGateway, admin_key: str, stack: EventStack) -> dict[str, Any]:
    summary: dict[str, Any] = do(gateway, admin_key, module=ORDERS)
    return summary


def test_registering_a_module_creates_its_subscriptions_and_one_schedule_per_every(
    registered: dict[str, Any], stack: EventStack, events_function: Any
) -> None:
    runtime = events_function.runtime  # the same table, read as the events function reads it
    subscriptions = runtime.run(runtime.app.adapters.subscriptions.list(TENANT))
    assert [(s.handler.index, s.pattern) for s in subscriptions] == [
        (0, "Order.placed"),
        (1, "Order.*"),
        (2, "Order.broken"),
    ]
    # The index the events function routes by: one entry per pattern, found by the types they match.
    placed = runtime.run(runtime.app.adapters.subscriptions.matching(TENANT, "Order.placed"))
    assert [(s.handler.index, s.pattern) for s in placed] == [(0, "Order.placed"), (1, "Order.*")]
    assert runtime.run(runtime.app.adapters.subscriptions.matching(TENANT, "Invoice.placed")) == []
    made = schedules(stack)
    assert len(made) == 2
    by_expression = {s["ScheduleExpression"]: s for s in made.values()}
    weekday = by_expression["cron(0 9 ? * MON-FRI *)"]
    assert weekday["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert weekday["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert weekday["GroupName"] == stack.group
    assert weekday["Target"]["Arn"] == stack.schedules_function_arn
    assert weekday["Target"]["RoleArn"] == stack.scheduler_role_arn
    assert weekday["Target"]["DeadLetterConfig"] == {"Arn": stack.dead_letter_arn}
    fire = json.loads(weekday["Target"]["Input"])
    assert fire["tenant"] == TENANT and fire["scheduledTime"] == "<aws.scheduler.scheduled-time>"
    assert "rate(15 minutes)" in by_expression
    for name in made:
        assert len(name) <= 64 and all(c.isalnum() or c in "-_." for c in name)


def test_a_send_reaches_its_handlers_through_the_bus_and_the_queues(
    registered: dict[str, Any], gateway: FakeGateway, admin_key: str, sources: list[SqsEventSource]
) -> None:
    do(gateway, admin_key, script="await send($.Order.placed, { id: 'o-1', total: 30 })")
    pump(sources, lambda: len(records(gateway, admin_key, "Receipt")) == 1 and records(gateway, admin_key, "Seen"))
    [receipt] = records(gateway, admin_key, "Receipt")
    assert (receipt["order"], receipt["total"]) == ("o-1", 30)
    assert [seen["type"] for seen in records(gateway, admin_key, "Seen")] == ["Order.placed"]


def test_a_failing_handler_is_retried_then_dead_lettered_and_a_replay_delivers_it_again(
    registered: dict[str, Any],
    gateway: FakeGateway,
    admin_key: str,
    sources: list[SqsEventSource],
    stack: EventStack,
    events_function: Any,
) -> None:
    runtime = events_function.runtime
    do(gateway, admin_key, script="await send($.Order.broken, { id: 'o-2' })")
    dead_letters = runtime.app.adapters.deliveries.dead_letters
    pump(sources, lambda: len(runtime.run(dead_letters(TENANT))) == 1, timeout=60)
    [dead] = runtime.run(dead_letters(TENANT))
    assert dead.attempts == 4 and "kaput" in (dead.last_error or "")
    assert len(records(gateway, admin_key, "BrokenAttempt")) == 4
    aside = [json.loads(body) for body in queue_bodies(stack.dead_letter_queue)]
    assert dead.id in [body.get("deliveryId") for body in aside]  # the raw message, set aside

    # An operator lists and replays it from a machine with the stack's settings (here moto's).
    operator = _env(stack, "McpFunction")
    listed = mcpdo_cli(operator, "events", "dead-letters", "list", "--tenant", TENANT)
    assert listed.returncode == 0, listed.stderr
    assert [(d["id"], d["status"], d["attempts"]) for d in json.loads(listed.stdout)] == [(dead.id, "dead", 4)]
    replayed = mcpdo_cli(operator, "events", "dead-letters", "replay", dead.id)
    assert replayed.returncode == 0, replayed.stderr
    assert "the stack's events function" in replayed.stdout
    pump(sources, lambda: len(records(gateway, admin_key, "BrokenAttempt")) == 5, timeout=60)
    pump(sources, lambda: len(runtime.run(dead_letters(TENANT))) == 1, timeout=60)
    assert len(records(gateway, admin_key, "BrokenAttempt")) == 8  # four fresh attempts after the replay


def test_a_delivery_message_handed_over_twice_applies_once(
    registered: dict[str, Any],
    gateway: FakeGateway,
    admin_key: str,
    sources: list[SqsEventSource],
    stack: EventStack,
    events_function: Any,
) -> None:
    do(gateway, admin_key, script="await send($.Order.placed, { id: 'o-3', total: 1 })")
    pump(sources[:1], lambda: bool(queue_peek(stack.deliveries_queue)))  # routed: its deliveries are queued
    messages = queue_peek(stack.deliveries_queue)
    duplicate = {"Records": [_record(m) for m in messages] + [_record(m, copy=True) for m in messages]}
    response = events_function.handler(duplicate, FunctionContext("EventsFunction"))
    assert response == {"batchItemFailures": []}
    receipts = [r for r in records(gateway, admin_key, "Receipt") if r["order"] == "o-3"]
    assert len(receipts) == 1


def queue_peek(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    got: list[dict[str, Any]] = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
    ).get("Messages", [])
    return got


def _record(message: dict[str, Any], *, copy: bool = False) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"] + ("-again" if copy else ""),
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "eventSource": "aws:sqs",
    }


def test_a_schedule_fire_runs_its_handler_once_per_slot_even_when_delivered_twice(
    registered: dict[str, Any],
    gateway: FakeGateway,
    admin_key: str,
    sources: list[SqsEventSource],
    stack: EventStack,
    schedules_function: Any,
) -> None:
    weekday = next(s for s in schedules(stack).values() if s["ScheduleExpression"].startswith("cron(0 9"))
    fire = weekday["Target"]["Input"].replace("<aws.scheduler.scheduled-time>", "2026-12-01T08:00:00Z")
    context = FunctionContext("SchedulesFunction")
    first = schedules_function.handler(json.loads(fire), context)
    second = schedules_function.handler(json.loads(fire), context)
    assert first["fired"] and second["fired"] and first["eventId"] == second["eventId"]
    pump(sources, lambda: len(records(gateway, admin_key, "Tick")) == 1)
    pump(sources, lambda: sources[1].run_once() == 0)
    assert len(records(gateway, admin_key, "Tick")) == 1


def test_email_send_without_a_user_handler_goes_out_through_ses(
    registered: dict[str, Any], gateway: FakeGateway, admin_key: str, sources: list[SqsEventSource]
) -> None:
    from moto.ses.models import ses_backends

    backend = ses_backends["123456789012"][REGION]
    before = len(backend.sent_messages)
    do(gateway, admin_key, script="await send($.Email.send, { to: 'ann@example.com', subject: 'Hi', body: 'Hello' })")
    pump(sources, lambda: len(backend.sent_messages) == before + 1)
    sent = backend.sent_messages[-1]
    assert sent.source == MAIL_FROM


def test_deliveries_with_too_little_time_left_are_queued_again_at_once_and_run_on_the_next_poll(
    registered: dict[str, Any],
    gateway: FakeGateway,
    admin_key: str,
    sources: list[SqsEventSource],
    stack: EventStack,
    events_function: Any,
) -> None:
    do(gateway, admin_key, script="await send($.Order.placed, { id: 'o-late', total: 2 })")
    pump(sources[:1], lambda: bool(queue_peek(stack.deliveries_queue)))
    sqs = boto3.client("sqs", region_name=REGION)
    got = sqs.receive_message(QueueUrl=stack.deliveries_queue, MaxNumberOfMessages=10, VisibilityTimeout=300)
    messages = got["Messages"]
    # Less time left than one script budget: nothing runs; each delivery goes back as a fresh message,
    # visible at once (not after 300 s), and the received one is done with (this receive was no attempt).
    short = FunctionContext("EventsFunction", remaining_ms=10_000)
    response = events_function.handler({"Records": [_record(m) for m in messages]}, short)
    assert response == {"batchItemFailures": []}
    for message in messages:
        sqs.delete_message(QueueUrl=stack.deliveries_queue, ReceiptHandle=message["ReceiptHandle"])
    assert not [r for r in records(gateway, admin_key, "Receipt") if r["order"] == "o-late"]
    assert sorted(m["Body"] for m in queue_peek(stack.deliveries_queue)) == sorted(m["Body"] for m in messages)
    pump(sources, lambda: [r for r in records(gateway, admin_key, "Receipt") if r["order"] == "o-late"])


def test_a_crash_between_storing_the_deliveries_and_queueing_them_loses_nothing(
    registered: dict[str, Any],
    gateway: FakeGateway,
    admin_key: str,
    sources: list[SqsEventSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first fan-out dies after the deliveries are stored: the event's message is not acknowledged, comes
    # back, and routing it again queues the deliveries it stored (once each: the handler runs once).
    crashed: list[int] = []
    fan_out = SqsDispatch.dispatch

    async def crash_once(self: SqsDispatch, deliveries: Any) -> None:
        if not crashed:
            crashed.append(len(deliveries))
            raise StoreError("the function died here")
        await fan_out(self, deliveries)

    monkeypatch.setattr(SqsDispatch, "dispatch", crash_once)
    do(gateway, admin_key, script="await send($.Order.placed, { id: 'o-crash', total: 3 })")
    pump(sources, lambda: [r for r in records(gateway, admin_key, "Receipt") if r["order"] == "o-crash"])
    pump(sources, lambda: sum(source.run_once() for source in sources) == 0)
    assert crashed == [2]  # Order.placed and Order.* were stored, then the process died
    assert len([r for r in records(gateway, admin_key, "Receipt") if r["order"] == "o-crash"]) == 1


# Last: it replaces the module the tests above use.
def test_registering_again_with_fewer_handlers_removes_the_old_subscriptions_and_schedules(
    registered: dict[str, Any],
    gateway: FakeGateway,
    admin_key: str,
    stack: EventStack,
    events_function: Any,
    schedules_function: Any,
) -> None:
    stale = next(s for s in schedules(stack).values() if s["ScheduleExpression"].startswith("cron(0 9"))
    summary = do(gateway, admin_key, module=FEWER)
    assert summary["version"] == registered["version"] + 1
    runtime = events_function.runtime
    subscriptions = runtime.run(runtime.app.adapters.subscriptions.list(TENANT))
    assert [(s.handler.version, s.pattern) for s in subscriptions] == [(summary["version"], "Order.placed")]
    [kept] = schedules(stack).values()
    assert kept["ScheduleExpression"] == "cron(30 9 ? * MON-FRI *)"
    # A fire of the removed schedule that was already in flight is ignored.
    fire = stale["Target"]["Input"].replace("<aws.scheduler.scheduled-time>", "2026-12-02T08:00:00Z")
    assert schedules_function.handler(json.loads(fire), FunctionContext("SchedulesFunction"))["fired"] is False
