"""Routing and deliveries: the core event services (`mcpdo.events`) over every backend kind in
events_backends.BACKEND_FACTORIES, and the DeliveryQueue contract those backends must pass."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcpdo.errors import Conflict, InputError, LimitExceeded, NotFound
from mcpdo.events import MAILER_MODULE, mailer_handler
from mcpdo.ids import new_id
from mcpdo.ports import Delivery, Event, HandlerRef
from mcpdo.timeparse import from_epoch_ms

from tests.contract.events_backends import (  # noqa: F401  (fixtures)
    BACKOFF_BASE,
    LEASE,
    EventsBackend,
    FakeClock,
    backend_factory_fixture,
    backend_fixture,
    clock_fixture,
    module,
    subscription,
)

pytestmark = pytest.mark.anyio


def event(
    type: str = "Order.created", data: Any = None, tenant: str = "acme", id: str | None = None, depth: int = 0
) -> Event:
    event_id = id or new_id("Event")
    return Event(
        id=event_id,
        type=type,
        data={"n": 1} if data is None else data,
        source="test",
        time="2026-01-01T00:00:00.000Z",
        tenant=tenant,
        correlation_id=event_id,
        depth=depth,
    )


async def live(
    backend: EventsBackend,
    *patterns: str,
    tenant: str = "acme",
    module_id: str = "https://acme.test/orders",
    version: int = 1,
) -> list[HandlerRef]:
    """Register a module version subscribing handler i to patterns[i]; returns the handler refs."""
    mod = module(module_id, version, tenant=tenant)
    subs = [subscription(mod, index, pattern) for index, pattern in enumerate(patterns)]
    await backend.register(mod, subs, [])
    return [sub.handler for sub in subs]


def targets(deliveries: list[Delivery]) -> list[tuple[str, str]]:
    return sorted((d.event.id, d.handler.handler_id) for d in deliveries)


# -- publish and fan-out -----------------------------------------------------------------------------


async def test_a_published_event_is_delivered_to_every_matching_subscription(backend: EventsBackend) -> None:
    exact, namespace, verb, _, everything = await live(
        backend, "Order.created", "Order.*", "*.created", "Order.paid", "*"
    )
    sent = event("Order.created", {"total": 10})
    await backend.publisher.publish(sent)
    claimed = await backend.claim(10, LEASE)
    assert {d.handler for d in claimed} == {exact, namespace, verb, everything}
    assert all(d.event == sent for d in claimed)
    assert all(d.status == "running" and d.attempts == 1 for d in claimed)


async def test_an_event_reaches_only_its_own_tenants_subscriptions(backend: EventsBackend) -> None:
    await live(backend, "Order.created", tenant="globex", module_id="https://globex.test/orders")
    await backend.publisher.publish(event(tenant="acme"))
    assert await backend.claim(10, LEASE) == []
    mine = event(tenant="globex")
    await backend.publisher.publish(mine)
    assert [(d.event.id, d.handler.tenant) for d in await backend.claim(10, LEASE)] == [(mine.id, "globex")]


async def test_an_event_nobody_subscribes_to_is_kept_but_delivered_to_no_one(backend: EventsBackend) -> None:
    await live(backend, "Order.created")
    sent = event("Invoice.created.v2")
    await backend.publisher.publish(sent)
    assert await backend.claim(10, LEASE) == []
    assert await backend.queue.deliveries(sent.id) == []


async def test_publishing_the_same_event_id_twice_delivers_it_once(backend: EventsBackend) -> None:
    await live(backend, "Order.created", "Order.*")
    sent = event()
    await backend.publisher.publish(sent)
    await backend.publisher.publish(sent)
    claimed = await backend.claim(10, LEASE)
    assert len(claimed) == 2
    for delivery in claimed:
        await backend.queue.complete(delivery)
    await backend.publisher.publish(sent)
    assert await backend.claim(10, LEASE) == []
    assert {d.status for d in await backend.queue.deliveries(sent.id)} == {"done"}


async def test_event_data_round_trips_as_json(backend: EventsBackend) -> None:
    await live(backend, "Order.created")
    data = {
        "id": "ord_1",
        "items": [{"sku": "a", "qty": 2}],
        "note": "héllo ✓",
        "paid": False,
        "x": None,
        "total": 12.5,
    }
    await backend.publisher.publish(event(data=data))
    [delivery] = await backend.claim(10, LEASE)
    assert delivery.event.data == data


async def test_a_malformed_event_is_refused(backend: EventsBackend) -> None:
    with pytest.raises(InputError, match="Invalid event type"):
        await backend.publisher.publish(event("Order created"))
    with pytest.raises(InputError, match="Invalid event type"):
        await backend.publisher.publish(event("Order.*"))
    with pytest.raises(InputError, match="JSON"):
        await backend.publisher.publish(event(data={"f": {1, 2}}))
    with pytest.raises(InputError, match="event id"):
        await backend.publisher.publish(event(id="not an id"))


# -- claiming, completing, leases --------------------------------------------------------------------


async def test_a_claimed_delivery_is_not_handed_out_again_while_its_lease_runs(
    backend: EventsBackend, clock: FakeClock
) -> None:
    await live(backend, "Order.created")
    await backend.publisher.publish(event())
    assert len(await backend.claim(10, LEASE)) == 1
    clock.advance(LEASE - 1)
    assert await backend.claim(10, LEASE) == []


async def test_claim_due_hands_out_at_most_limit_deliveries_oldest_first(
    backend: EventsBackend, clock: FakeClock
) -> None:
    await live(backend, "Order.created")
    sent = []
    for _ in range(5):
        sent.append(event())
        await backend.publisher.publish(sent[-1])
        clock.advance(0.01)
    first = await backend.claim(2, LEASE)
    rest = await backend.claim(10, LEASE)
    assert [d.event.id for d in first + rest] == [e.id for e in sent]
    assert await backend.claim(0, LEASE) == []


async def test_a_completed_delivery_is_never_handed_out_again(backend: EventsBackend, clock: FakeClock) -> None:
    await live(backend, "Order.created")
    sent = event()
    await backend.publisher.publish(sent)
    [delivery] = await backend.claim(10, LEASE)
    await backend.queue.complete(delivery)
    clock.advance(LEASE * 10)
    assert await backend.claim(10, LEASE) == []
    assert await backend.queue.requeue_running() == 0
    assert await backend.claim(10, LEASE) == []
    [done] = await backend.queue.deliveries(sent.id)
    assert done.status == "done" and done.attempts == 1


async def test_a_running_delivery_whose_lease_expired_is_handed_out_again(
    backend: EventsBackend, clock: FakeClock
) -> None:
    await live(backend, "Order.created")
    await backend.publisher.publish(event())
    [first] = await backend.claim(10, LEASE)
    clock.advance(LEASE + 1)
    [again] = await backend.claim(10, LEASE)
    assert again.id == first.id and again.attempts == 2
    assert again.last_error is not None and "interrupted" in again.last_error


async def test_requeue_running_makes_in_flight_deliveries_due_at_once(backend: EventsBackend) -> None:
    await live(backend, "Order.created")
    await backend.publisher.publish(event())
    await backend.publisher.publish(event())
    assert len(await backend.claim(10, LEASE)) == 2
    assert await backend.queue.requeue_running() == 2
    assert len(await backend.claim(10, LEASE)) == 2


async def test_a_failure_reported_on_a_claim_that_was_taken_over_is_ignored(
    backend: EventsBackend, clock: FakeClock
) -> None:
    await live(backend, "Order.created")
    sent = event()
    await backend.publisher.publish(sent)
    [stale] = await backend.claim(10, LEASE)
    clock.advance(LEASE + 1)
    [current] = await backend.claim(10, LEASE)
    await backend.core.fail(stale, "late failure from the first claimant")
    [state] = await backend.queue.deliveries(sent.id)
    assert state.status == "running" and state.attempts == 2
    await backend.queue.complete(current)
    [state] = await backend.queue.deliveries(sent.id)
    assert state.status == "done"


# -- retries, dead letters, replay -------------------------------------------------------------------


async def test_failures_retry_three_times_with_exponential_back_off_then_dead_letter(
    backend: EventsBackend, clock: FakeClock
) -> None:
    [handler] = await live(backend, "Order.created")
    sent = event()
    await backend.publisher.publish(sent)
    for attempt, wait in ((1, 1), (2, 2), (3, 4)):
        [delivery] = await backend.claim(10, LEASE)
        assert delivery.attempts == attempt
        await backend.core.fail(delivery, f"boom {attempt}")
        clock.advance(wait * BACKOFF_BASE - 0.05)
        assert await backend.claim(10, LEASE) == [], f"retry {attempt} came before its back-off"
        clock.advance(0.05)
    [last] = await backend.claim(10, LEASE)
    assert last.attempts == 4 and last.last_error == "boom 3"
    await backend.core.fail(last, "boom 4")
    clock.advance(3600)
    assert await backend.claim(10, LEASE) == []
    [dead] = await backend.queue.dead_letters("acme")
    assert (dead.id, dead.handler, dead.event, dead.status) == (last.id, handler, sent, "dead")
    assert dead.attempts == 4 and dead.last_error == "boom 4"


async def test_a_replayed_dead_letter_is_delivered_again_with_fresh_retries(
    backend: EventsBackend, clock: FakeClock
) -> None:
    await live(backend, "Order.created")
    await backend.publisher.publish(event())
    for _ in range(4):
        [delivery] = await backend.claim(10, LEASE)
        await backend.core.fail(delivery, "boom")
        clock.advance(60)
    [dead] = await backend.queue.dead_letters()
    await backend.queue.replay(dead.id)
    assert await backend.queue.dead_letters() == []
    [again] = await backend.claim(10, LEASE)
    assert again.id == dead.id and again.attempts == 1
    await backend.core.fail(again, "still failing")
    assert await backend.queue.dead_letters() == []  # it has its retries back
    clock.advance(BACKOFF_BASE)
    [retry] = await backend.claim(10, LEASE)
    await backend.queue.complete(retry)
    [done] = await backend.queue.deliveries(dead.event.id)
    assert done.status == "done"


async def test_a_failure_that_no_retry_can_fix_is_dead_lettered_on_its_first_attempt(backend: EventsBackend) -> None:
    await live(backend, "Order.created")
    await backend.publisher.publish(event())
    [delivery] = await backend.claim(10, LEASE)
    await backend.core.fail(delivery, "owner revoked", retry=False)
    [dead] = await backend.queue.dead_letters()
    assert (dead.id, dead.attempts, dead.last_error) == (delivery.id, 1, "owner revoked")


async def test_a_dead_letter_replayed_to_another_version_is_delivered_to_that_version(backend: EventsBackend) -> None:
    [handler] = await live(backend, "Order.created")
    await backend.publisher.publish(event())
    [delivery] = await backend.claim(10, LEASE)
    await backend.core.fail(delivery, "broken", retry=False)
    await backend.queue.replay(delivery.id, handler.version + 1)
    [again] = await backend.claim(10, LEASE)
    assert again.id == delivery.id
    assert again.handler.version == handler.version + 1
    assert (again.handler.module_id, again.handler.index) == (handler.module_id, handler.index)


async def test_a_delivery_interrupted_on_its_last_attempt_is_dead_lettered(
    backend: EventsBackend, clock: FakeClock
) -> None:
    await live(backend, "Order.created")
    await backend.publisher.publish(event())
    for _ in range(3):
        [delivery] = await backend.claim(10, LEASE)
        await backend.core.fail(delivery, "boom")
        clock.advance(60)
    [last] = await backend.claim(10, LEASE)
    assert last.attempts == 4
    clock.advance(LEASE + 1)
    assert await backend.claim(10, LEASE) == []
    [dead] = await backend.queue.dead_letters()
    assert dead.last_error is not None and "interrupted" in dead.last_error


async def test_replaying_an_unknown_id_says_so(backend: EventsBackend) -> None:
    with pytest.raises(NotFound, match="Dead letter del_nope not found"):
        await backend.queue.replay("del_nope")


async def test_only_dead_letters_can_be_replayed(backend: EventsBackend) -> None:
    await live(backend, "Order.created")
    sent = event()
    await backend.publisher.publish(sent)
    [pending] = await backend.queue.deliveries(sent.id)
    with pytest.raises(Conflict, match="not dead-lettered"):
        await backend.queue.replay(pending.id)


async def test_dead_letters_are_listed_per_tenant_or_all(backend: EventsBackend, clock: FakeClock) -> None:
    await live(backend, "Order.created")
    await live(backend, "Order.created", tenant="globex", module_id="https://globex.test/orders")
    await backend.publisher.publish(event(tenant="acme"))
    await backend.publisher.publish(event(tenant="globex"))
    for _ in range(4):
        for delivery in await backend.claim(10, LEASE):
            await backend.core.fail(delivery, "boom")
        clock.advance(60)
    assert [d.handler.tenant for d in await backend.queue.dead_letters("acme")] == ["acme"]
    assert [d.handler.tenant for d in await backend.queue.dead_letters("globex")] == ["globex"]
    assert sorted(d.handler.tenant for d in await backend.queue.dead_letters()) == ["acme", "globex"]
    assert await backend.queue.dead_letters("initech") == []


# -- direct deliveries (schedule fires) --------------------------------------------------------------


async def test_enqueue_delivers_to_exactly_one_handler_once(backend: EventsBackend) -> None:
    await live(backend, "Schedule.fired", "*")
    target = HandlerRef("acme", "https://acme.test/cron", 3, 1)
    fire = event("Schedule.fired", {"schedule": "5m", "scheduledTime": "2026-01-01T00:05:00.000Z"})
    await backend.publisher.enqueue(fire, target)
    await backend.publisher.enqueue(fire, target)
    [delivery] = await backend.claim(10, LEASE)
    assert delivery.handler == target and delivery.event == fire


async def test_enqueue_refuses_a_handler_of_another_tenant(backend: EventsBackend) -> None:
    with pytest.raises(InputError, match="tenant"):
        await backend.publisher.enqueue(event(tenant="acme"), HandlerRef("globex", "https://g.test/m", 1, 0))


# -- the built-in mailer route -----------------------------------------------------------------------


async def test_email_send_without_a_user_handler_goes_to_the_builtin_mailer(backend: EventsBackend) -> None:
    await live(backend, "*.send", "*")
    mail = event("Email.send", {"to": "a@example.com", "subject": "Hi"})
    await backend.publisher.publish(mail)
    handlers = {d.handler for d in await backend.queue.deliveries(mail.id)}
    assert mailer_handler("acme") in handlers
    assert len(handlers) == 3  # the two observers still see it


@pytest.mark.parametrize("pattern", ["Email.send", "Email.*"])
async def test_a_user_handler_for_email_send_replaces_the_builtin_mailer(backend: EventsBackend, pattern: str) -> None:
    [mine] = await live(backend, pattern)
    mail = event("Email.send", {"to": "a@example.com"})
    await backend.publisher.publish(mail)
    assert [d.handler for d in await backend.queue.deliveries(mail.id)] == [mine]
    assert all(d.handler.module_id != MAILER_MODULE for d in await backend.queue.deliveries(mail.id))


# -- atomic re-registration --------------------------------------------------------------------------


async def test_an_event_published_during_re_registration_reaches_old_or_new_handlers_never_both_or_neither(
    backend_factory: Callable[[Path, Callable[[], int]], EventsBackend],
    tmp_path: Path,
    clock: FakeClock,
    anyio_backend: str,
) -> None:
    registrar = backend_factory(tmp_path, clock)
    publisher = backend_factory(tmp_path, clock)
    module_id = "https://acme.test/orders"
    await live(registrar, "Order.created", module_id=module_id)
    published: list[str] = []
    done = threading.Event()

    async def publish_many() -> None:
        while not done.is_set() or len(published) < 50:
            sent = event()
            await publisher.publisher.publish(sent)
            published.append(sent.id)

    def publish_thread() -> None:
        asyncio.run(publish_many())

    async def re_register() -> None:
        # Version v subscribes with handler index v % 2, so old and new handlers have different ids.
        for version in range(2, 42):
            mod = module(module_id, version)
            await registrar.register(mod, [subscription(mod, version % 2, "Order.created")], [])
        done.set()

    def register_thread() -> None:
        asyncio.run(re_register())

    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(anyio.to_thread.run_sync, publish_thread)
                group.start_soon(anyio.to_thread.run_sync, register_thread)
        counts = {event_id: len(await registrar.queue.deliveries(event_id)) for event_id in published}
        assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
    finally:
        await registrar.close()
        await publisher.close()


# -- runs log ----------------------------------------------------------------------------------------


async def test_purge_forgets_old_completed_deliveries_but_keeps_dead_letters_and_recent_work(
    backend: EventsBackend, clock: FakeClock
) -> None:
    await live(backend, "Order.created", "Order.paid")
    done_event, dead_event = event("Order.created"), event("Order.paid")
    await backend.publisher.publish(done_event)
    await backend.publisher.publish(dead_event)
    for delivery in await backend.claim(10, LEASE):
        if delivery.event.id == done_event.id:
            await backend.queue.complete(delivery)
        else:
            await backend.core.fail(delivery, "boom")
    for _ in range(3):
        clock.advance(60)
        for delivery in await backend.claim(10, LEASE):
            await backend.core.fail(delivery, "boom")
    clock.advance(3600)
    recent = event("Order.created")
    await backend.publisher.publish(recent)
    cut = from_epoch_ms(clock() - 1000)
    assert await backend.queue.purge(cut) == 1
    assert await backend.queue.deliveries(done_event.id) == []
    assert [d.event.id for d in await backend.queue.dead_letters()] == [dead_event.id]
    assert [d.status for d in await backend.queue.deliveries(recent.id)] == ["pending"]


# -- storms: fair claiming across tenants, the hop limit, the per-send cap ------------------------------
# Backends run with the default hop limit (8) and per-send cap (100).

HOP_LIMIT = 8
MAX_DELIVERIES_PER_SEND = 100


async def backlog(backend: EventsBackend, clock: FakeClock, tenant: str, count: int) -> list[Event]:
    sent = []
    for _ in range(count):
        sent.append(event(tenant=tenant))
        await backend.publisher.publish(sent[-1])
        clock.advance(0.01)
    return sent


async def test_a_claim_includes_another_tenants_delivery_queued_behind_a_fifty_delivery_backlog(
    backend: EventsBackend, clock: FakeClock
) -> None:
    await live(backend, "Order.created", tenant="acme")
    await live(backend, "Order.created", tenant="globex", module_id="https://globex.test/orders")
    storm = await backlog(backend, clock, "acme", 50)
    [other] = await backlog(backend, clock, "globex", 1)
    claimed = await backend.claim(4, LEASE)
    assert len(claimed) == 4
    assert other.id in {d.event.id for d in claimed}
    assert sorted(d.event.id for d in claimed if d.handler.tenant == "acme") == sorted(e.id for e in storm[:3])


async def test_a_tenant_alone_still_gets_the_whole_claim_limit(backend: EventsBackend, clock: FakeClock) -> None:
    await live(backend, "Order.created", tenant="acme")
    await live(backend, "Order.created", tenant="globex", module_id="https://globex.test/orders")
    storm = await backlog(backend, clock, "acme", 10)
    claimed = await backend.claim(4, LEASE)
    assert [d.event.id for d in claimed] == [e.id for e in storm[:4]]


async def test_claims_of_one_delivery_take_turns_between_tenants_with_due_work(
    backend: EventsBackend, clock: FakeClock
) -> None:
    await live(backend, "Order.created", tenant="acme")
    await live(backend, "Order.created", tenant="globex", module_id="https://globex.test/orders")
    await backlog(backend, clock, "acme", 10)
    await backlog(backend, clock, "globex", 3)
    order = []
    for _ in range(8):
        [delivery] = await backend.claim(1, LEASE)
        order.append(delivery.handler.tenant)
        await backend.queue.complete(delivery)
    assert order == ["acme", "globex", "acme", "globex", "acme", "globex", "acme", "acme"]


async def test_a_tenant_holding_in_flight_deliveries_yields_the_next_slot_to_a_tenant_with_none(
    backend: EventsBackend, clock: FakeClock
) -> None:
    await live(backend, "Order.created", tenant="acme")
    await live(backend, "Order.created", tenant="globex", module_id="https://globex.test/orders")
    await backlog(backend, clock, "acme", 10)
    await backlog(backend, clock, "globex", 5)
    first = await backend.claim(4, LEASE)
    assert sorted(d.handler.tenant for d in first) == ["acme", "acme", "globex", "globex"]
    for delivery in first:
        if delivery.handler.tenant == "globex":
            await backend.queue.complete(delivery)
    # acme still runs two and has the oldest due delivery; globex runs none, so the free slot is globex's.
    [next_slot] = await backend.claim(1, LEASE)
    assert next_slot.handler.tenant == "globex"


async def test_an_event_within_the_hop_limit_is_delivered_with_its_depth(backend: EventsBackend) -> None:
    await live(backend, "Order.created")
    sent = event(depth=HOP_LIMIT)
    await backend.publisher.publish(sent)
    [delivery] = await backend.claim(10, LEASE)
    assert delivery.event == sent and delivery.event.depth == HOP_LIMIT
    assert await backend.queue.dead_letters() == []


async def test_an_event_past_the_hop_limit_is_stored_and_dead_lettered_at_once_naming_the_limit(
    backend: EventsBackend, clock: FakeClock
) -> None:
    first, second = await live(backend, "Order.created", "Order.*")
    sent = event(depth=HOP_LIMIT + 1)
    await backend.publisher.publish(sent)
    assert await backend.claim(10, LEASE) == []
    clock.advance(3600)
    assert await backend.claim(10, LEASE) == [], "a hop-limit dead letter must never be retried"
    dead = await backend.queue.dead_letters("acme")
    assert {d.handler for d in dead} == {first, second}
    for letter in dead:
        assert letter.event == sent and letter.status == "dead" and letter.attempts == 0
        assert letter.last_error == (
            f"Event chain too deep: Order.created reached depth {HOP_LIMIT + 1}, past the hop limit of "
            f"{HOP_LIMIT} (MCPDO_EVENT_HOP_LIMIT); handlers that send events in a loop stop here"
        )
    assert {d.status for d in await backend.queue.deliveries(sent.id)} == {"dead"}


async def test_a_replayed_hop_limit_dead_letter_runs_that_hop_once(backend: EventsBackend) -> None:
    await live(backend, "Order.created")
    sent = event(depth=HOP_LIMIT + 1)
    await backend.publisher.publish(sent)
    [dead] = await backend.queue.dead_letters()
    await backend.queue.replay(dead.id)
    [again] = await backend.claim(10, LEASE)
    assert again.id == dead.id and again.attempts == 1 and again.event.depth == HOP_LIMIT + 1
    await backend.queue.complete(again)
    assert [d.status for d in await backend.queue.deliveries(sent.id)] == ["done"]


async def test_a_schedule_fire_past_the_hop_limit_is_dead_lettered_like_a_published_event(
    backend: EventsBackend,
) -> None:
    target = HandlerRef("acme", "https://acme.test/cron", 1, 0)
    fire = event("Schedule.fired", {"schedule": "5m"}, depth=HOP_LIMIT + 1)
    await backend.publisher.enqueue(fire, target)
    assert await backend.claim(10, LEASE) == []
    [dead] = await backend.queue.dead_letters()
    assert dead.handler == target and dead.last_error is not None and "hop limit" in dead.last_error


async def test_a_send_matching_more_subscriptions_than_the_cap_is_refused_and_leaves_nothing_behind(
    backend: EventsBackend,
) -> None:
    await live(backend, *["Order.created"] * (MAX_DELIVERIES_PER_SEND + 1))
    sent = event()
    with pytest.raises(LimitExceeded) as refused:
        await backend.publisher.publish(sent)
    assert refused.value.message.startswith(
        f"send(Order.created) would make {MAX_DELIVERIES_PER_SEND + 1} deliveries, past the limit of "
        f"{MAX_DELIVERIES_PER_SEND} per send (MCPDO_MAX_DELIVERIES_PER_SEND); nothing was published"
    )
    assert await backend.queue.deliveries(sent.id) == []
    assert await backend.claim(10, LEASE) == []
    # The event itself was not kept either: once the fan-out fits, the same id publishes as new.
    [handler] = await live(backend, "Order.created", version=2)
    await backend.publisher.publish(sent)
    assert [d.handler for d in await backend.queue.deliveries(sent.id)] == [handler]


async def test_a_send_matching_exactly_the_cap_is_delivered_to_every_subscription(backend: EventsBackend) -> None:
    handlers = await live(backend, *["Order.created"] * MAX_DELIVERIES_PER_SEND)
    sent = event()
    await backend.publisher.publish(sent)
    assert {d.handler for d in await backend.queue.deliveries(sent.id)} == set(handlers)
