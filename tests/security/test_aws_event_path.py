"""Hostile tenants and hostile bytes on the AWS event path, under moto (no Docker).

The stack is the one tests/aws/test_events_functions.py drives: the MCP function behind a fake API Gateway
publishes to EventBridge, the rule queues each event, the events function routes it and runs the
deliveries, the schedules function fires Scheduler inputs. Nothing fires by itself in moto: the tests hand
the queues to the events function as Lambda's SQS event source would (`drain` polls until every queue is
empty, in-flight retries included) and hand crafted records and Scheduler inputs to the functions
directly. The queues get the template's redrive policies, so SQS moves a message aside after as many
receives as in a deployed stack.

The victim is tenant "acme" (a module with exact, `Type.*`, `*.verb` and `*` handlers, a failing handler,
a schedule, a completed and a dead-lettered delivery). Every attack snapshots every item of the state
table that is acme's (records, events, deliveries, runs, modules, subscriptions, schedule sets) and acme's
Scheduler schedules, drains the queues, and checks the snapshot is unchanged.

1. Tenant isolation: sends of every type shape by tenant "evil" (exact, wildcard-looking, `Email.send`,
   128 characters, unicode, control characters) and by tenants whose names look like acme's (`acme#x`,
   `acme%23x`, `ac/me` and `ac_2Fme`, `acme.`, `ACME`, `acmé`, `acme `, a 300-character name); envelopes
   whose source and detail name different tenants; an event reusing an id of acme's.
2. Event storms: a self-feeding handler stops at the hop limit (dead letters at once, never run); a send
   wider than MCPDO_MAX_DELIVERIES_PER_SEND throws and publishes nothing, from a script and from a handler;
   an event that became too wide before routing is set aside unrouted; another tenant's backlog does not
   hold acme's event back for long.
3. Poison messages: unreadable, huge, deeply nested and malformed bodies, forged envelopes, delivery ids
   that are unknown or acme's (done, dead), duplicates, in the same batch as good records: the good ones
   are processed once, the bad ones set aside or dropped, `batchItemFailures` names exactly what comes
   back. Records handed back for lack of time: visible again at once, and never lost without a dead letter.
4. Schedule fires: forged Scheduler inputs (another tenant, an old or future version, another handler,
   a changed text, unreadable slots and fields) are dropped without a delivery; a slot written with
   another offset is the same slot; another tenant's module with acme's id leaves acme's schedules alone.
5. Secrets hygiene: log lines (every `mcpdo` and root log record, with its extra fields and traceback,
   and the metrics on stdout) hold no API key, no event data and no AWS credentials; dead-letter texts and
   set-aside reasons name no endpoint, ARN or credential.
6. Mail: the sender is always the configured one, extra recipients are never mailed, duplicated messages
   mail once, and another tenant's `Email.send` handler does not take acme's mail over.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from mcpdo.adapters.eventbridge_transport import source_of
from mcpdo.adapters.scheduler_schedules import schedule_name_prefix
from mcpdo.ports import Delivery, Run

from tests.support.aws import REGION, EventStack, create_event_stack, template
from tests.support.aws_attacks import (
    SesSpy,
    capture_logs,
    delete,
    drain,
    failures,
    forged_record,
    queue_counts,
    show_again,
    sqs_record,
    table_items,
    take,
    take_set_aside,
    tenant_items,
    tenant_schedules,
)
from tests.support.aws_attacks import call as call_tool
from tests.support.gateway import FakeGateway, fake_gateway
from tests.support.sqs_source import FunctionContext, SqsEventSource, load_function

ACME = "acme"
EVIL = "evil"
STORMER = "evil-storm"  # a second hostile tenant, so that storms do not mix with evil's observers
MAIL_FROM = "mailer@mcpdo-probe.test"
HOP_LIMIT = 3
CAP = 5
SLOT = "2026-12-01T09:00:00Z"

ACME_ID = "https://acme.test/orders"
ACME_MODULE = f"""---
$id: {ACME_ID}
$type: Workflow
---
on($.Order.placed, async (order, event) => {{
  await db.create('Receipt', {{ order: order.id ?? null, tenant: event.tenant }})
}})
on('Order.*', async (data, event) => {{ await db.create('Hit', {{ via: 'Order.*', type: event.type }}) }})
on('*.placed', async (data, event) => {{ await db.create('Hit', {{ via: '*.placed', type: event.type }}) }})
on('*', async (data, event) => {{ await db.create('Hit', {{ via: '*', type: event.type, tenant: event.tenant }}) }})
on($.Order.broken, async () => {{ throw new Error('kaput') }})
on($.Ping.sent, async (data) => {{ await db.create('Pong', {{ n: data.n }}) }})
every('0 9 * * *', async () => {{ await db.create('Tick', {{}}) }})
"""

# Evil's module has acme's $id, an observer of everything, acme's exact subscription and acme's schedule.
EVIL_MIRROR = f"""---
$id: {ACME_ID}
---
on('*', async (data, event) => {{ await db.create('Caught', {{ type: event.type, tenant: event.tenant }}) }})
on($.Order.placed, async (data, event) => {{ await db.create('Caught', {{ type: 'exact', tenant: event.tenant }}) }})
every('0 9 * * *', async () => {{ await db.create('Tick', {{}}) }})
"""
EVIL_MIRROR_WITHOUT_SCHEDULE = "\n".join(line for line in EVIL_MIRROR.split("\n") if not line.startswith("every("))

LOOKALIKE_MODULE = f"""---
$id: {ACME_ID}
---
on('*', async (data, event) => {{
  await db.create('Hit', {{ tenant: event.tenant, type: event.type, from: data.from }})
}})
"""

STORM = """---
$id: https://evil.test/storm
---
on($.Storm.tick, async (data) => {
  await db.create('StormTick', { n: data.n })
  await send($.Storm.tick, { n: data.n + 1 })
  await send($.Storm.tick, { n: data.n + 1 })
})
"""

WIDE = (
    """---
$id: https://evil.test/wide
---
on($.Fan.start, async () => {
  let message = 'sent'
  try { await send($.Fan.out, {}) } catch (error) { message = error.message }
  await db.create('FanError', { message })
})
"""
    + "on($.Fan.out, async () => {})\n" * (CAP + 1)
)


def race_module(handlers: int) -> str:
    return "---\n$id: https://evil.test/race\n---\n" + "on($.Fan.race, async () => {})\n" * handlers


SLOW = """---
$id: https://evil.test/slow
---
on($.Slow.tick, async (data) => { await db.create('SlowTick', { n: data.n }) })
"""

MAILJACK_ID = "https://evil.test/mailjack"
MAILJACK = f"""---
$id: {MAILJACK_ID}
---
on($.Email.send, async (data, event) => {{ await db.create('Jacked', {{ to: data.to, tenant: event.tenant }}) }})
"""
MAILJACK_OFF = f"---\n$id: {MAILJACK_ID}\n---\nexport const off = true\n"


def too_wide(event_type: str, deliveries: int) -> str:
    return (
        f"send({event_type}) would make {deliveries} deliveries, past the limit of {CAP} per send "
        f"(MCPDO_MAX_DELIVERIES_PER_SEND); nothing was published. Narrow the on() patterns that match {event_type}"
    )


def too_deep(depth: int) -> str:
    return (
        f"Event chain too deep: Storm.tick reached depth {depth}, past the hop limit of {HOP_LIMIT} "
        "(MCPDO_EVENT_HOP_LIMIT); handlers that send events in a loop stop here"
    )


# -- the stack ---------------------------------------------------------------------------------------------


def _receives(queue: str) -> int:
    """How many receives SQS allows a message of `queue` (a logical id) before moving it aside."""
    return int(template()["Resources"][queue]["Properties"]["RedrivePolicy"]["maxReceiveCount"])


@pytest.fixture(scope="module")
def stack(moto_endpoint: str) -> EventStack:
    boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress=MAIL_FROM)
    made = create_event_stack()
    sqs = boto3.client("sqs", region_name=REGION)
    for queue, url in (("EventsQueue", made.events_queue), ("DeliveriesQueue", made.deliveries_queue)):
        policy = {"deadLetterTargetArn": made.dead_letter_arn, "maxReceiveCount": str(_receives(queue))}
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(policy)})
    return made


def _environment(stack: EventStack, function: str) -> dict[str, str]:
    # Retries after 1, 2, 4 ms (the queue rounds each up to a second); small storm limits; no rate limit,
    # since one key makes hundreds of calls here; no X-Ray daemon.
    return {
        **stack.environment(function),
        "MCPDO_RETRY_BASE_MS": "1",
        "MCPDO_EVENT_HOP_LIMIT": str(HOP_LIMIT),
        "MCPDO_MAX_DELIVERIES_PER_SEND": str(CAP),
        "MCPDO_RATE_LIMIT_AUTHENTICATED": "0",
        "MCPDO_MAIL_FROM": MAIL_FROM,
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


@pytest.fixture(scope="module")
def gateway(stack: EventStack) -> Iterator[FakeGateway]:
    with fake_gateway(_environment(stack, "McpFunction")) as running:
        yield running


@pytest.fixture(scope="module")
def events_function(stack: EventStack) -> Iterator[Any]:
    module = load_function("events", _environment(stack, "EventsFunction"))
    yield module
    module.runtime.close()


@pytest.fixture(scope="module")
def schedules_function(stack: EventStack) -> Iterator[Any]:
    module = load_function("schedules", _environment(stack, "SchedulesFunction"))
    yield module
    module.runtime.close()


@dataclass
class World:
    """The stack, its three functions and the callers' keys, with what the tests do with them."""

    stack: EventStack
    gateway: FakeGateway
    events: Any  # functions/events/app.py, loaded
    schedules: Any  # functions/schedules/app.py, loaded
    sources: list[SqsEventSource]
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> Any:
        return self.events.runtime

    def run(self, work: Any) -> Any:
        return self.runtime.run(work)

    def key(self, tenant: str) -> str:
        """An admin key of `tenant` (made on first use)."""
        if tenant not in self.keys:
            secret, _ = self.run(self.runtime.app.auth.create_key(f"{tenant}-admin", tenant=tenant, roles=("admin",)))
            self.keys[tenant] = secret
        return self.keys[tenant]

    def call(self, tenant: str, **arguments: Any) -> tuple[bool, Any]:
        return call_tool(self.gateway.url, self.key(tenant), **arguments)

    def do(self, tenant: str, **arguments: Any) -> Any:
        is_error, value = self.call(tenant, **arguments)
        assert not is_error, value
        return value

    def records(self, tenant: str, type_name: str) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self.do(tenant, script=f"await db.list('{type_name}', {{ limit: 1000 }})")
        return listed

    def drain(self, timeout: float = 60.0) -> int:
        return drain(self.sources, timeout)

    def route(self) -> None:
        """Drain only the events queue: the events are routed, their deliveries wait in their queue."""
        drain(self.sources[:1])

    def handle(self, records: list[dict[str, Any]], *, remaining_ms: int = 60_000) -> set[str]:
        """One SQS batch straight into the events function; the message ids it hands back."""
        context = FunctionContext("EventsFunction", remaining_ms=remaining_ms)
        return failures(self.events.handler({"Records": records}, context))

    def fire(self, payload: Any) -> dict[str, Any]:
        fired: dict[str, Any] = self.schedules.handler(payload, FunctionContext("SchedulesFunction"))
        return fired

    def deliveries(self, event_id: str) -> list[Delivery]:
        found: list[Delivery] = self.run(self.runtime.app.adapters.deliveries.deliveries(event_id))
        return found

    def dead_letters(self, tenant: str) -> list[Delivery]:
        found: list[Delivery] = self.run(self.runtime.app.adapters.deliveries.dead_letters(tenant))
        return found

    def runs(self, tenant: str) -> list[Run]:
        found: list[Run] = self.run(self.runtime.app.adapters.runs.runs(tenant, 1000))
        return found

    def schedules_of(self, tenant: str, module_id: str = ACME_ID) -> dict[str, dict[str, Any]]:
        return tenant_schedules(self.stack.group, schedule_name_prefix(tenant, module_id))

    def snapshot(self, tenant: str) -> dict[str, Any]:
        """Everything of `tenant`'s in the table, and its Scheduler schedules."""
        return {"items": tenant_items(self.stack.table, tenant), "schedules": self.schedules_of(tenant)}

    def set_aside(self) -> list[Any]:
        return take_set_aside(self.stack.dead_letter_queue)


@pytest.fixture(scope="module")
def world(stack: EventStack, gateway: FakeGateway, events_function: Any, schedules_function: Any) -> Iterator[World]:
    sources = [
        SqsEventSource(stack.events_queue, events_function.handler, "EventsFunction"),
        SqsEventSource(stack.deliveries_queue, events_function.handler, "EventsFunction"),
    ]
    yield World(stack, gateway, events_function, schedules_function, sources)


@pytest.fixture(scope="module")
def ses(world: World) -> Iterator[SesSpy]:
    """Every SendEmail call of the events function (the SES mailer's own client)."""
    with SesSpy(world.runtime.app.adapters.mailer._ses) as spy:
        yield spy


@dataclass(frozen=True)
class Acme:
    version: int
    placed_event: str
    broken_event: str
    done: Delivery  # the exact Order.placed delivery, completed
    dead: Delivery  # the Order.broken delivery, dead-lettered after its retries
    schedule_input: dict[str, Any]


@pytest.fixture(scope="module")
def acme(world: World, ses: SesSpy) -> Acme:
    world.do(ACME, module=ACME_MODULE)  # version 1: an old version for forged fires to name
    summary = world.do(ACME, module=ACME_MODULE)
    placed = world.do(ACME, script="await send($.Order.placed, { id: 'base' })")["id"]
    broken = world.do(ACME, script="await send($.Order.broken, { id: 'base' })")["id"]
    world.drain()
    [done] = [d for d in world.deliveries(placed) if d.handler.index == 0]
    [dead] = [d for d in world.deliveries(broken) if d.status == "dead"]
    assert done.status == "done" and dead.attempts == 4
    [schedule] = world.schedules_of(ACME).values()
    # The snapshot every attack compares holds each kind of acme's state (it is not vacuously equal).
    kinds = {pk.split("#", 1)[0] for pk, _ in world.snapshot(ACME)["items"]}
    assert {"ENT", "EVT", "DLV", "RUN", "MOD", "SUB", "SUBSET", "SUBREV", "SCHEDSET"} <= kinds, kinds
    return Acme(summary["version"], placed, broken, done, dead, json.loads(schedule["Target"]["Input"]))


@pytest.fixture(scope="module")
def evil(world: World, acme: Acme) -> dict[str, Any]:
    """Evil's mirror of acme's module is registered; acme's schedules as they were just before."""
    before = world.schedules_of(ACME)
    summary = world.do(EVIL, module=EVIL_MIRROR)
    return {"summary": summary, "acme_schedules_before": before}


def caught(world: World) -> list[dict[str, Any]]:
    return world.records(EVIL, "Caught")


# == 1. Tenant isolation ======================================================================================

ACCEPTED_TYPES = [
    "Order.placed",
    "Order.created",
    "Shop.placed",
    "Ping.sent",
    "Order.broken",
    "Email.send",
    "A" * 60 + "." + "b" * 67,  # 128 characters, the limit
]
REFUSED_TYPES = [
    "Schedule.fired",  # only the scheduler sends it: its dead letters replay to the schedule's handler
    "Order.*",
    "*",
    "*.placed",
    "Order",
    "Order..placed",
    "Ördér.placed",
    "Order.pla\u200bced",
    "\uff2frder.placed",  # a fullwidth O
    "Order.placed\n",
    "Order.placed\u0000",
    "Order.placed#acme",
    "Order/placed.x",
    "A" * 60 + "." + "b" * 68,  # 129 characters
]
SEND_EVERY_SHAPE = f"""
const accepted = []
for (const type of {json.dumps(ACCEPTED_TYPES)}) {{
  accepted.push((await send(type, {{ to: 'sink@evil.test', subject: 'probe', probe: type }})).id)
}}
const refused = {{}}
for (const type of {json.dumps(REFUSED_TYPES)}) {{
  try {{ await send(type, {{}}); refused[type] = 'sent' }} catch (error) {{ refused[type] = String(error.message) }}
}}
return {{ accepted, refused }}
"""


def test_evil_sends_of_every_type_shape_never_reach_acme(world: World, acme: Acme, evil: dict[str, Any]) -> None:
    before = world.snapshot(ACME)
    seen = len(caught(world))
    sent = world.do(EVIL, script=SEND_EVERY_SHAPE)
    assert len(sent["accepted"]) == len(ACCEPTED_TYPES)
    for event_type, outcome in sent["refused"].items():
        expected = "send(): Schedule.fired is sent by the scheduler" if event_type == "Schedule.fired" else None
        assert outcome.startswith(expected or "send(): the event must be a type like"), (event_type, outcome)
    world.drain()

    # Evil's own events were routed (to evil): the attack was real, and nothing of it reached acme.
    new = caught(world)[seen:]
    assert sorted(c["type"] for c in new) == sorted([*ACCEPTED_TYPES, "exact"])
    assert {c["tenant"] for c in new} == {EVIL}
    assert world.snapshot(ACME) == before


LOOKALIKES = ["acme#x", "acme%23x", "ac/me", "ac_2Fme", "acme.", "ACME", "acmé", "acme ", "acme" + "e" * 300]


def test_tenants_whose_names_look_like_acme_stay_apart(world: World, acme: Acme) -> None:
    before = world.snapshot(ACME)
    assert len({source_of(tenant) for tenant in [ACME, *LOOKALIKES]}) == len(LOOKALIKES) + 1
    for tenant in LOOKALIKES:
        world.do(tenant, module=LOOKALIKE_MODULE)
        world.do(tenant, script=f"await send($.Order.placed, {{ from: {json.dumps(tenant)} }})")
    world.drain()

    for tenant in LOOKALIKES:
        hits = world.records(tenant, "Hit")
        assert [(h["tenant"], h["type"], h["from"]) for h in hits] == [(tenant, "Order.placed", tenant)], tenant
        assert world.dead_letters(tenant) == []
        assert {run.handler.tenant for run in world.runs(tenant)} == {tenant}
    assert world.snapshot(ACME) == before


def _reshaped(body: str, *, detail: dict[str, Any] | None = None, **envelope: Any) -> str:
    """An EventBridge envelope like `body` with some fields changed (`detail_type` is `detail-type`)."""
    parsed = json.loads(body)
    parsed.update({name.replace("_", "-"): value for name, value in envelope.items()})
    if detail is not None:
        parsed["detail"] = {**parsed["detail"], **detail}
    return json.dumps(parsed)


def test_an_envelope_is_routed_only_when_its_source_and_detail_name_the_same_tenant(
    world: World, acme: Acme, evil: dict[str, Any]
) -> None:
    world.set_aside()
    before = world.snapshot(ACME)
    seen = len(caught(world))
    world.do(EVIL, script="await send($.Order.placed, { probe: 'forge' })")
    [message] = take(world.stack.events_queue)
    body = message["Body"]
    hashed_acme = "mcpdo.tenant-sha256/" + hashlib.sha256(ACME.encode()).hexdigest()
    forged = {
        "acme's source, evil's detail": _reshaped(body, source=source_of(ACME)),
        "evil's source, acme's detail": _reshaped(body, detail={"tenant": ACME}),
        "acme's hashed source and detail": _reshaped(body, source=hashed_acme, detail={"tenant": ACME}),
        "another detail-type": _reshaped(body, detail_type="Ping.sent"),
        "another prefix": _reshaped(body, source="other.tenant/" + EVIL),
    }
    records = [sqs_record(message)] + [forged_record(text, f"forged-{n}") for n, text in enumerate(forged.values())]
    # An id acme's event has, in an envelope of evil's own: nothing of acme's may change.
    records.append(forged_record(_reshaped(body, detail={"id": acme.placed_event}), "forged-id"))

    assert world.handle(records) == set()
    delete(world.stack.events_queue, [message])
    world.drain()

    aside = {entry.body: entry.reason for entry in world.set_aside()}
    for name, text in forged.items():
        assert aside.get(text, "").startswith("unreadable: Malformed EventBridge event: "), name
    # Only the genuine envelope was routed: evil's two handlers, once each (the id-collision copy was not).
    assert sorted(c["type"] for c in caught(world)[seen:]) == ["Order.placed", "exact"]
    assert world.snapshot(ACME) == before


# == 2. Event storms =============================================================================================


def _chain(world: World, root: str) -> list[dict[str, Any]]:
    """The stored events of the chain that started with event `root` (they share its correlation id)."""
    return table_items(
        world.stack.table, lambda item: item["sk"]["S"] == "EVT" and item.get("correlation_id", {}).get("S") == root
    )


def test_a_self_feeding_handler_stops_at_the_hop_limit_with_dead_letters_at_once(world: World, acme: Acme) -> None:
    before = world.snapshot(ACME)
    world.do(STORMER, module=STORM)
    root = world.do(STORMER, script="await send($.Storm.tick, { n: 0 })")["id"]
    world.drain(timeout=90)

    events = _chain(world, root)
    depths = sorted(int(item["depth"]["N"]) for item in events)
    assert depths == sorted(d for d in range(HOP_LIMIT + 2) for _ in range(2**d))
    deliveries = [d for item in events for d in world.deliveries(item["id"]["S"])]
    ran = [d for d in deliveries if d.event.depth <= HOP_LIMIT]
    stopped = [d for d in deliveries if d.event.depth > HOP_LIMIT]
    assert {d.status for d in ran} == {"done"} and len(ran) == 2 ** (HOP_LIMIT + 1) - 1
    assert len(stopped) == 2 ** (HOP_LIMIT + 1)
    for letter in stopped:
        assert (letter.status, letter.attempts, letter.last_error) == ("dead", 0, too_deep(HOP_LIMIT + 1))
    # Dead at once: never run, so never in the runs log.
    stopped_events = {d.event.id for d in stopped}
    assert not [run for run in world.runs(STORMER) if run.event_id in stopped_events]
    assert len(world.records(STORMER, "StormTick")) == len(ran)
    assert world.snapshot(ACME) == before


def test_a_send_wider_than_the_cap_throws_and_publishes_nothing(world: World, acme: Acme) -> None:
    before = world.snapshot(ACME)
    world.do(STORMER, module=WIDE)
    script = "try { await send($.Fan.out, {}); return 'sent' } catch (error) { return error.message }"
    assert world.do(STORMER, script=script) == too_wide("Fan.out", CAP + 1)
    assert queue_counts(world.stack.events_queue) == (0, 0, 0)  # nothing reached the bus
    # From a handler, inside the events function: the same refusal, caught by the handler.
    world.do(STORMER, script="await send($.Fan.start, {})")
    world.drain()
    assert [r["message"] for r in world.records(STORMER, "FanError")] == [too_wide("Fan.out", CAP + 1)]
    assert not table_items(world.stack.table, lambda item: item.get("type", {}).get("S") == "Fan.out")
    assert world.snapshot(ACME) == before


def test_an_event_that_became_too_wide_before_routing_is_set_aside_unrouted(world: World, acme: Acme) -> None:
    world.set_aside()
    before = world.snapshot(ACME)
    world.do(STORMER, module=race_module(CAP))
    event_id = world.do(STORMER, script="await send($.Fan.race, {})")["id"]
    world.do(STORMER, module=race_module(CAP + 1))  # registered while the event waits in its queue
    world.drain()
    assert world.deliveries(event_id) == []
    [aside] = [entry for entry in world.set_aside() if json.loads(entry.body)["detail"]["id"] == event_id]
    assert aside.reason == "unroutable: " + too_wide("Fan.race", CAP + 1)
    assert world.snapshot(ACME) == before


def test_each_tenants_deliveries_travel_in_a_message_group_of_its_own(world: World, acme: Acme) -> None:
    # The deliveries queue is a fair queue when its messages carry a group: SQS then serves a tenant
    # without a backlog ahead of another tenant's backlog. moto keeps the group but does not emulate the
    # fairness itself, so this checks what the stack controls: every message names its tenant's group,
    # distinct per tenant, and a fresh copy sent again (no time left) keeps it.
    world.do(STORMER, module=SLOW)
    world.do(STORMER, script="for (let n = 0; n < 3; n++) await send($.Slow.tick, { n })")
    world.do(ACME, script="await send($.Ping.sent, { n: 8 })")
    world.route()
    messages = take(world.stack.deliveries_queue, visibility=300, at_least=4)
    groups = {json.loads(m["Body"])["tenant"]: m["Attributes"]["MessageGroupId"] for m in messages}
    assert set(groups) == {ACME, STORMER} and groups[ACME] != groups[STORMER]
    assert all(m["Attributes"]["MessageGroupId"] == groups[json.loads(m["Body"])["tenant"]] for m in messages)
    assert world.handle([sqs_record(m) for m in messages], remaining_ms=10_000) == set()  # sent again
    delete(world.stack.deliveries_queue, messages)  # acknowledged, as Lambda does for a success
    copies = take(world.stack.deliveries_queue, visibility=300, at_least=len(messages))
    assert sorted((m["Body"], m["Attributes"]["MessageGroupId"]) for m in copies) == sorted(
        (m["Body"], m["Attributes"]["MessageGroupId"]) for m in messages
    )
    show_again(world.stack.deliveries_queue, copies)
    world.drain(timeout=90)
    assert [p["n"] for p in world.records(ACME, "Pong") if p["n"] == 8] == [8]


# == 3. Poison messages ================================================================================================


def test_poison_in_an_events_batch_is_set_aside_and_the_good_event_is_routed_once(
    world: World, acme: Acme, evil: dict[str, Any]
) -> None:
    world.set_aside()
    before = world.snapshot(ACME)
    seen = len(caught(world))
    world.do(EVIL, script="await send($.Order.placed, { probe: 'poison-events' })")
    [message] = take(world.stack.events_queue)
    body = message["Body"]
    detail = json.loads(body)["detail"]
    long_type = "A" * 64 + "." + "b" * 64
    poison = {
        "not JSON": "not json at all",
        "empty": "",
        "huge": "x" * 300_000,
        "deep": "[" * 100_000 + "]" * 100_000,
        "null": "null",
        "a string": '"text"',
        "an empty object": "{}",
        "a bare detail-type": json.dumps({"detail-type": "Order.placed"}),
        "a detail that is text": json.dumps({"detail-type": "Order.placed", "detail": "text"}),
        "a detail without fields": json.dumps({**json.loads(body), "detail": {"id": detail["id"]}}),
        "a negative depth": _reshaped(body, detail={"depth": -1}),
        "a depth as text": _reshaped(body, detail={"depth": "0"}),
        "a depth as true": _reshaped(body, detail={"depth": True}),
        "a time that is no time": _reshaped(body, detail={"time": "yesterday"}),
        "a wildcard type": _reshaped(body, detail_type="Order.*", detail={"type": "Order.*"}),
        "a type of 129": _reshaped(body, detail_type=long_type, detail={"type": long_type}),
        "a control character in the tenant": _reshaped(
            body, source=source_of("evil\u0000"), detail={"tenant": "evil\u0000"}
        ),
        "an id with a slash": _reshaped(body, detail={"id": "evt_../../x"}),
        "NaN data": json.dumps({**json.loads(body), "detail": {**detail, "data": float("nan")}}),
    }
    records = [sqs_record(message), sqs_record(message, copy="-again")]
    records += [forged_record(text, f"poison-{n}") for n, text in enumerate(poison.values())]

    assert world.handle(records) == set()
    delete(world.stack.events_queue, [message])
    world.drain()

    aside = {entry.body: entry.reason for entry in world.set_aside()}
    for name, text in poison.items():
        assert aside.get(text, "").startswith(("unreadable: ", "unroutable: ")), name
    assert body not in aside
    # The good event, handed over twice, was routed once: one delivery per handler of evil's.
    assert sorted(c["type"] for c in caught(world)[seen:]) == ["Order.placed", "exact"]
    assert world.snapshot(ACME) == before


def test_poison_in_a_deliveries_batch_runs_nothing_of_acme_and_the_good_deliveries_once(
    world: World, acme: Acme, evil: dict[str, Any]
) -> None:
    world.set_aside()
    before = world.snapshot(ACME)
    seen = len(caught(world))
    world.do(EVIL, script="await send($.Order.placed, { probe: 'poison-deliveries' })")
    world.route()
    good = take(world.stack.deliveries_queue, at_least=2)
    assert len(good) == 2

    def message(delivery_id: Any, event_id: Any = "evt_x", tenant: Any = EVIL) -> str:
        return json.dumps({"deliveryId": delivery_id, "eventId": event_id, "tenant": tenant})

    malformed = {
        "not JSON": "not json at all",
        "huge": "x" * 300_000,
        "deep": "[" * 2_000 + "]" * 2_000,
        "a list": "[1, 2]",
        "a path for an id": message("../../../etc/passwd"),
        "a number for an id": message(12345),
        "an id of 129": message("d" * 129),
        "no event id": json.dumps({"deliveryId": "del_x", "tenant": EVIL}),
        "a control character in the tenant": message("del_x", tenant="evil\u0000"),
        "an empty tenant": message("del_x", tenant=""),
    }
    dropped = {
        "an unknown id": message("del_" + "0" * 32),
        "acme's done delivery, as evil": message(acme.done.id, acme.placed_event),
        "acme's dead delivery, as evil": message(acme.dead.id, acme.broken_event),
        "acme's done delivery, as acme": message(acme.done.id, acme.placed_event, ACME),
        "acme's dead delivery, as acme": message(acme.dead.id, acme.broken_event, ACME),
    }
    records = [sqs_record(m) for m in good] + [sqs_record(good[0], copy="-again")]
    records += [forged_record(text, f"bad-{n}") for n, text in enumerate([*malformed.values(), *dropped.values()])]

    assert world.handle(records) == set()
    # Handed over again after they completed: nothing runs twice.
    assert world.handle([sqs_record(m, copy="-late") for m in good]) == set()
    delete(world.stack.deliveries_queue, good)
    world.drain()

    aside = {entry.body: entry.reason for entry in world.set_aside()}
    for name, text in malformed.items():
        assert aside.get(text, "").startswith("unreadable: "), name
    for name, text in dropped.items():
        assert text not in aside, name  # nothing to do: dropped, not evidence of a fault
    assert sorted(c["type"] for c in caught(world)[seen:]) == ["Order.placed", "exact"]
    assert world.snapshot(ACME) == before


def test_an_event_is_routed_even_when_its_invocation_has_little_time_left(world: World, evil: dict[str, Any]) -> None:
    # Routing runs no handler: it never waits for a script budget, and its message is never handed back.
    seen = len(caught(world))
    world.do(EVIL, script="await send($.Order.placed, { probe: 'no time' })")
    messages = take(world.stack.events_queue, visibility=300)
    assert world.handle([sqs_record(m) for m in messages], remaining_ms=10_000) == set()
    delete(world.stack.events_queue, messages)
    world.drain()
    assert sorted(c["type"] for c in caught(world)[seen:]) == ["Order.placed", "exact"]


def test_a_delivery_with_no_time_left_in_every_invocation_is_never_moved_aside_unrun(world: World, acme: Acme) -> None:
    # Each invocation that receives acme's delivery has no time left for it, as when another tenant's
    # handlers (25 s each, the script budget) ran first in the same batch, more often than the queue's
    # maxReceiveCount. Such a receive is no attempt: a fresh copy goes back, so SQS's redrive (which counts
    # receives) never moves the delivery aside while it is pending; it runs when an invocation has time.
    ping = world.do(ACME, script="await send($.Ping.sent, { n: 99 })")["id"]
    world.route()
    for _ in range(_receives("DeliveriesQueue") + 2):
        messages = take(world.stack.deliveries_queue, visibility=300)
        assert world.handle([sqs_record(m) for m in messages], remaining_ms=10_000) == set()
        delete(world.stack.deliveries_queue, messages)  # acknowledged, as Lambda does for a success
    assert {d.status for d in world.deliveries(ping)} == {"pending"}
    world.drain()
    assert {d.status for d in world.deliveries(ping)} == {"done"}
    assert [p["n"] for p in world.records(ACME, "Pong") if p["n"] == 99] == [99]


# == 4. Schedule fires ==============================================================================================


def test_another_tenants_module_with_acmes_id_and_schedule_leaves_acmes_schedules_alone(
    world: World, acme: Acme, evil: dict[str, Any]
) -> None:
    assert world.schedules_of(ACME) == evil["acme_schedules_before"] != {}
    [mirror] = world.schedules_of(EVIL).values()
    assert json.loads(mirror["Target"]["Input"])["tenant"] == EVIL
    world.do(EVIL, module=EVIL_MIRROR_WITHOUT_SCHEDULE)  # evil's reconcile deletes evil's schedule only
    assert world.schedules_of(EVIL) == {}
    assert world.schedules_of(ACME) == evil["acme_schedules_before"]
    world.do(EVIL, module=EVIL_MIRROR)

    # Evil's own schedule fires evil's handler, never acme's.
    before = world.snapshot(ACME)
    [mirror] = world.schedules_of(EVIL).values()
    fired = world.fire(json.loads(mirror["Target"]["Input"].replace("<aws.scheduler.scheduled-time>", SLOT)))
    assert fired["fired"]
    assert {d.handler.tenant for d in world.deliveries(fired["eventId"])} == {EVIL}
    world.drain()
    assert world.snapshot(ACME) == before


def _fire(entry: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**entry, "scheduledTime": SLOT, **changes}


def test_forged_schedule_fires_are_dropped_without_a_delivery_for_acme(
    world: World, acme: Acme, evil: dict[str, Any]
) -> None:
    before = world.snapshot(ACME)
    entry = acme.schedule_input
    assert (entry["tenant"], entry["version"]) == (ACME, acme.version)
    stale = {
        "another tenant": _fire(entry, tenant=EVIL),
        "a module only acme has, as evil": _fire(entry, tenant=EVIL, moduleId="https://acme.test/only-acme"),
        "a look-alike tenant": _fire(entry, tenant="acme#"),
        "acme's encoded key as a tenant": _fire(entry, tenant="acme%23"),
        "an old version": _fire(entry, version=acme.version - 1),
        "a future version": _fire(entry, version=acme.version + 1),
        "an on() handler's index": _fire(entry, index=0),
        "another index": _fire(entry, index=entry["index"] + 1),
        "a huge index": _fire(entry, index=10**15),
        "a changed text": _fire(entry, schedule="0 10 * * *"),
        "an equivalent text": _fire(entry, schedule="0 9 * * 0-6"),
        "the text padded": _fire(entry, schedule=" 0 9 * * *"),
    }
    without_slot = {k: v for k, v in _fire(entry).items() if k != "scheduledTime"}
    unreadable: dict[str, Any] = {
        "slot: a word": _fire(entry, scheduledTime="tomorrow"),
        "slot: a zone name": _fire(entry, scheduledTime="2026-12-01T09:00:00 Europe/Paris"),
        "slot: no such day": _fire(entry, scheduledTime="2026-02-30T09:00:00Z"),
        "slot: an offset past 23 hours": _fire(entry, scheduledTime="2026-12-01T09:00:00+25:00"),
        "slot: year 0": _fire(entry, scheduledTime="0000-01-01T00:00:00Z"),
        "slot: empty": _fire(entry, scheduledTime=""),
        "slot: a number": _fire(entry, scheduledTime=1_796_000_000_000),
        "slot: the placeholder": _fire(entry, scheduledTime="<aws.scheduler.scheduled-time>"),
        "slot: missing": without_slot,
        "version: true": _fire(entry, version=True),
        "version: text": _fire(entry, version=str(acme.version)),
        "version: zero": _fire(entry, version=0),
        "index: negative": _fire(entry, index=-1),
        "index: a fraction": _fire(entry, index=1.5),
        "tenant: a number": _fire(entry, tenant=5),
        "moduleId: null": _fire(entry, moduleId=None),
        "not an object": [entry],
        "JSON text of a list": "[]",
        "not JSON": "not json",
        "bytes": b"\xff\xfe",
        "null": None,
        "a number": 42,
    }
    for name, payload in stale.items():
        assert world.fire(payload)["fired"] is False, name
    for name, payload in unreadable.items():
        fired = world.fire(payload)
        assert fired["fired"] is False and fired.get("error"), name
    world.drain()
    assert world.snapshot(ACME) == before


def test_a_slot_written_with_another_offset_is_the_same_slot(world: World, acme: Acme) -> None:
    ticks = len(world.records(ACME, "Tick"))
    slots = [
        "2026-12-03T09:00:00Z",
        "2026-12-03T09:00:00.000Z",
        "2026-12-03T10:00:00+01:00",
        "2026-12-03T04:00:00-05:00",
    ]
    fired = [world.fire(_fire(acme.schedule_input, scheduledTime=slot)) for slot in slots]
    assert all(f["fired"] for f in fired) and len({f["eventId"] for f in fired}) == 1
    world.drain()
    assert len(world.records(ACME, "Tick")) == ticks + 1


# == 5. Secrets hygiene ================================================================================================

MARK = "sekrit-7f3a9c"


def _leaks(text: str, needles: dict[str, str]) -> dict[str, str]:
    """Which needles `text` holds, each with the text around its first occurrence."""
    found = {}
    for name, needle in needles.items():
        if needle and needle in text:
            at = text.index(needle)
            found[name] = text[max(0, at - 300) : at + 100]
    return found


def assert_no_leak(text: str, needles: dict[str, str]) -> None:
    leaked = _leaks(text, needles)
    assert not leaked, f"leaked: {sorted(leaked)}\n" + "\n".join(f"{k}: ...{v}..." for k, v in leaked.items())


def _secrets(world: World) -> dict[str, str]:
    needles = {f"API key of {tenant}": secret for tenant, secret in world.keys.items()}
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        needles[name] = os.environ.get(name, "")
    return needles


def test_logs_of_routing_running_retrying_and_mailing_hold_no_key_event_data_or_credential(
    world: World, acme: Acme, ses: SesSpy, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    with capture_logs() as logs:
        world.do(ACME, script=f"await send($.Order.placed, {{ id: 'o-{MARK}', card: '{MARK}-card' }})")
        world.do(ACME, script=f"await send($.Order.broken, {{ card: '{MARK}-card' }})")  # retried, then dead
        mail = f"{{ to: 'ann@example.com', subject: '{MARK}-subject', body: '{MARK}-body' }}"
        world.do(ACME, script=f"await send($.Email.send, {mail})")
        world.do(EVIL, script=f"await send($.Order.placed, {{ card: '{MARK}-evil' }})")
        world.drain()
    printed = capsys.readouterr()
    assert logs.lines, "nothing was logged: the capture is broken"
    text = "\n".join([logs.text, printed.out, printed.err])
    assert_no_leak(text, {**_secrets(world), "event data": MARK})
    assert len(ses.to("ann@example.com")) == 1


ACME_LOOKUP = """---
$id: https://acme.test/lookup
---
on($.Lookup.asked, async (data) => { await db.list(data.kind) })
"""


def test_error_texts_that_quote_event_data_stay_out_of_the_logs(
    world: World, acme: Acme, capsys: pytest.CaptureFixture[str]
) -> None:
    world.do(ACME, module=ACME_LOOKUP)
    capsys.readouterr()
    with capture_logs() as logs:
        world.do(ACME, script=f"await send($.Email.send, '{MARK}-text')")  # the mailer: not an object
        world.do(ACME, script=f"await send($.Email.send, {{ to: '{MARK}-recipient', subject: 'x' }})")
        world.do(ACME, script=f"await send($.Lookup.asked, {{ kind: '{MARK}-kind' }})")  # not a type name
        world.drain()
    printed = capsys.readouterr()
    text = "\n".join([logs.text, printed.out, printed.err])
    needles = {
        "Email.send data that is no object": f"{MARK}-text",
        "an Email.send recipient that is no address": f"{MARK}-recipient",
        "a handler's db.list argument": f"{MARK}-kind",
    }
    assert_no_leak(text, needles)


def test_dead_letters_and_set_aside_reasons_name_no_endpoint_arn_or_credential(
    world: World, acme: Acme, ses: SesSpy, moto_endpoint: str
) -> None:
    world.set_aside()
    hidden = f"{moto_endpoint}/ses-private-path"
    role = "arn:aws:sts::123456789012:assumed-role/mcpdo-events/AKIAPROBE00000000000"
    ses.failing["down@example.com"] = EndpointConnectionError(endpoint_url=hidden)
    denied = {"Error": {"Code": "AccessDeniedException", "Message": f"User: {role} is not authorized"}}
    ses.failing["denied@example.com"] = ClientError(denied, "SendEmail")  # type: ignore[arg-type]
    try:
        ids = [
            world.do(ACME, script=f"await send($.Email.send, {{ to: '{to}', subject: 's' }})")["id"]
            for to in ("down@example.com", "denied@example.com")
        ]
        world.drain()
    finally:
        ses.failing.clear()
    letters = [d for d in world.dead_letters(ACME) if d.event.id in ids]
    assert len(letters) == 2
    texts = [d.last_error or "" for d in letters] + [entry.reason for entry in world.set_aside()]
    needles = {**_secrets(world), "endpoint": moto_endpoint.split("//")[1], "ARN": "arn:aws", "key id": "AKIAPROBE"}
    for text in texts:
        assert_no_leak(text, needles)
    assert sorted(d.last_error for d in letters) == [
        "SES is unavailable (send_email)",
        "SES send_email failed: AccessDeniedException",
    ]


# == 6. Mail =========================================================================================================


def test_a_tenant_cannot_choose_the_sender_nor_add_recipients(world: World, evil: dict[str, Any], ses: SesSpy) -> None:
    mail = {
        "to": "victim@example.com",
        "from": "ceo@acme.test",
        "cc": ["cc@example.com"],
        "bcc": ["bcc@example.com"],
        "replyTo": "x@evil.test",
        "subject": "Invoice",
        "body": "Please pay",
    }
    world.do(EVIL, script=f"await send($.Email.send, {json.dumps(mail)})")
    world.do(EVIL, script=f"await send($.Email.send, {{ to: 'victim2@example.com', from: '{MAIL_FROM}' }})")
    world.drain()
    [sent] = ses.to("victim@example.com")
    assert sent["FromEmailAddress"] == MAIL_FROM
    assert sent["Destination"] == {"ToAddresses": ["victim@example.com"]}
    assert sent["ReplyToAddresses"] == ["ceo@acme.test"]  # the author's address, as documented
    [posing] = ses.to("victim2@example.com")
    assert (posing["FromEmailAddress"], posing["ReplyToAddresses"]) == (MAIL_FROM, [])
    for other in ("cc@example.com", "bcc@example.com", "x@evil.test"):
        assert not [c for c in ses.calls if other in json.dumps(c["Destination"])], other


def test_duplicated_mail_messages_send_one_email(world: World, evil: dict[str, Any], ses: SesSpy) -> None:
    world.do(EVIL, script="await send($.Email.send, { to: 'once@example.com', subject: 'once' })")
    [envelope] = take(world.stack.events_queue)
    assert world.handle([sqs_record(envelope), sqs_record(envelope, copy="-again")]) == set()
    delete(world.stack.events_queue, [envelope])
    deliveries = take(world.stack.deliveries_queue, at_least=2)
    batch = [sqs_record(m) for m in deliveries] + [sqs_record(m, copy="-again") for m in deliveries]
    assert world.handle(batch) == set()
    assert world.handle([sqs_record(m, copy="-late") for m in deliveries]) == set()
    delete(world.stack.deliveries_queue, deliveries)
    world.drain()
    assert len(ses.to("once@example.com")) == 1


@pytest.fixture
def mailjack(world: World, evil: dict[str, Any]) -> Iterator[None]:
    """Evil's module with an `Email.send` handler (evil's mail goes to it), removed afterwards."""
    world.do(EVIL, module=MAILJACK)
    yield
    world.do(EVIL, module=MAILJACK_OFF)


def test_another_tenants_email_handler_does_not_take_acmes_mail_over(
    world: World, acme: Acme, ses: SesSpy, mailjack: None
) -> None:
    world.do(ACME, script="await send($.Email.send, { to: 'customer@example.com', subject: 'Your order' })")
    world.do(EVIL, script="await send($.Email.send, { to: 'jacked@example.com', subject: 'mine' })")
    world.drain()
    assert len(ses.to("customer@example.com")) == 1  # acme's mail went out through SES
    assert ses.to("jacked@example.com") == []  # evil's went to evil's own handler
    jacked = world.records(EVIL, "Jacked")
    assert [(j["to"], j["tenant"]) for j in jacked] == [("jacked@example.com", EVIL)]  # evil's mail only
