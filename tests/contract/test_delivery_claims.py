"""DeliveryStore contract, claims by id included (what a queue consumer does): every adapter, on a fake clock.

A new adapter joins by adding a factory to `STORES`; it must then pass the whole suite. The DeliveryQueue half
(claim_due, requeue_running, fair claiming) is test_events.py's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcpdo.adapters.dynamodb_deliveries import DynamoDeliveryStore
from mcpdo.adapters.memory_events import MemoryDeliveryStore
from mcpdo.adapters.sqlite_deliveries import SqliteDeliveryStore
from mcpdo.errors import Conflict, NotFound
from mcpdo.ids import new_id
from mcpdo.ports import Claim, Delivery, DeliveryStore, Event, HandlerRef
from mcpdo.timeparse import format_iso, from_epoch_ms

from tests.contract.dynamodb_backends import dynamo_table
from tests.contract.events_backends import FakeClock

pytestmark = pytest.mark.anyio

LEASE = 30.0
MAX_ATTEMPTS = 4


@dataclass
class Backend:
    store: DeliveryStore
    clock: FakeClock


def _dynamodb(path: Path, clock: FakeClock, request: pytest.FixtureRequest) -> Backend:
    return Backend(DynamoDeliveryStore(dynamo_table(request), clock=clock), clock)


STORES: dict[str, Callable[[Path, FakeClock, pytest.FixtureRequest], Backend]] = {
    "dynamodb": _dynamodb,
    "memory": lambda path, clock, request: Backend(MemoryDeliveryStore(clock=clock), clock),
    "sqlite": lambda path, clock, request: Backend(SqliteDeliveryStore(path / "state.db", clock=clock), clock),
}


@pytest.fixture(params=sorted(STORES))
async def backend(request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str) -> AsyncIterator[Backend]:
    made = STORES[request.param](tmp_path, FakeClock(), request)
    try:
        yield made
    finally:
        await made.store.close()


def event(tenant: str = "acme", data: object = None) -> Event:
    event_id = new_id("Event")
    return Event(
        id=event_id,
        type="Order.created",
        data={"n": 1} if data is None else data,
        source="test",
        time="2026-01-01T00:00:00.000Z",
        tenant=tenant,
        correlation_id=event_id,
    )


def handler(index: int = 0, tenant: str = "acme", version: int = 1) -> HandlerRef:
    return HandlerRef(tenant, f"https://{tenant}.test/orders", version, index)


async def one(backend: Backend, sent: Event | None = None, target: HandlerRef | None = None) -> Delivery:
    """Add an event with one handler; its pending delivery."""
    sent = sent or event()
    assert await backend.store.add(sent, [target or handler()])
    [delivery] = await backend.store.deliveries(sent.id)
    return delivery


async def claimed(backend: Backend, delivery_id: str, max_attempts: int = MAX_ATTEMPTS) -> Delivery:
    taken = await backend.store.claim(delivery_id, LEASE, max_attempts)
    assert taken.delivery is not None, taken
    return taken.delivery


async def dead(backend: Backend, target: HandlerRef, error: str = "boom") -> Delivery:
    """A dead letter of `target`, buried on its first attempt."""
    delivery = await one(backend, event(target.tenant), target)
    await backend.store.bury(await claimed(backend, delivery.id), error)
    return delivery


# -- add and deliveries ----------------------------------------------------------------------------------


async def test_add_stores_one_pending_delivery_per_handler_due_now_once_per_event(backend: Backend) -> None:
    sent = event(data={"items": [{"sku": "a"}], "note": "héllo ✓", "x": None})
    first, second = handler(0), handler(1)
    assert await backend.store.add(sent, [first, second, first])  # a repeated handler counts once
    deliveries = await backend.store.deliveries(sent.id)
    assert sorted(d.handler.index for d in deliveries) == [0, 1]
    for delivery in deliveries:
        assert (delivery.event, delivery.status, delivery.attempts) == (sent, "pending", 0)
        assert (delivery.next_attempt_at, delivery.last_error, delivery.claim) == (
            format_iso(backend.clock()),
            None,
            None,
        )
    assert len({d.id for d in deliveries}) == 2
    assert not await backend.store.add(sent, [handler(2)])
    assert await backend.store.deliveries(sent.id) == deliveries


async def test_an_event_without_handlers_is_kept_once_with_no_deliveries(backend: Backend) -> None:
    sent = event()
    assert await backend.store.add(sent, [])
    assert not await backend.store.add(sent, [handler()])
    assert await backend.store.deliveries(sent.id) == []
    assert await backend.store.deliveries("evt_unknown") == []


async def test_a_dead_error_at_add_makes_dead_letters_at_once_that_are_never_claimed(backend: Backend) -> None:
    sent = event()
    assert await backend.store.add(sent, [handler(0), handler(1)], dead_error="too deep")
    letters = await backend.store.dead_letters("acme")
    assert sorted(d.handler.index for d in letters) == [0, 1]
    for letter in letters:
        assert (letter.event, letter.status, letter.attempts, letter.last_error) == (sent, "dead", 0, "too deep")
        assert await backend.store.claim(letter.id, LEASE, MAX_ATTEMPTS) == Claim()
        backend.clock.advance(3600)
        assert await backend.store.claim(letter.id, LEASE, MAX_ATTEMPTS) == Claim()
    assert {d.status for d in await backend.store.deliveries(sent.id)} == {"dead"}


# -- claim by id ---------------------------------------------------------------------------------------


async def test_a_claim_hands_the_delivery_out_once_while_its_lease_runs(backend: Backend) -> None:
    delivery = await one(backend)
    # One after another: moto checks a condition and applies the update without a lock, so concurrent claims
    # there can both pass (DynamoDB itself serializes the writes of one item).
    results = [await backend.store.claim(delivery.id, LEASE, MAX_ATTEMPTS) for _ in range(5)]
    [taken] = [r.delivery for r in results if r.delivery is not None]
    assert (taken.id, taken.event, taken.handler) == (delivery.id, delivery.event, delivery.handler)
    assert (taken.status, taken.attempts) == ("running", 1) and taken.claim is not None
    lease_end = from_epoch_ms(backend.clock() + int(LEASE * 1000))
    assert [r for r in results if r.delivery is None] == [Claim(due_at=lease_end)] * 4
    backend.clock.advance(LEASE - 1)
    assert await backend.store.claim(delivery.id, LEASE, MAX_ATTEMPTS) == Claim(due_at=lease_end)
    [state] = await backend.store.deliveries(delivery.event.id)
    assert (state.status, state.attempts, state.claim) == ("running", 1, taken.claim)


async def test_an_expired_lease_is_claimed_again_with_the_interrupted_attempt_counted(backend: Backend) -> None:
    delivery = await one(backend)
    first = await claimed(backend, delivery.id)
    backend.clock.advance(LEASE)
    again = await claimed(backend, delivery.id)
    assert again.attempts == 2 and again.claim not in (None, first.claim)
    assert again.last_error == "Attempt 1 was interrupted (its worker stopped)"


async def test_an_attempt_interrupted_with_no_attempt_left_becomes_a_dead_letter(backend: Backend) -> None:
    delivery = await one(backend)
    await claimed(backend, delivery.id, max_attempts=2)
    backend.clock.advance(LEASE + 1)
    await claimed(backend, delivery.id, max_attempts=2)
    backend.clock.advance(LEASE + 1)
    assert await backend.store.claim(delivery.id, LEASE, 2) == Claim()
    letter = await backend.store.dead_letter(delivery.id)
    assert letter is not None and (letter.status, letter.attempts, letter.claim) == ("dead", 2, None)
    assert letter.last_error == "Attempt 2 was interrupted (its worker stopped) and no retry is left"
    assert await backend.store.claim(delivery.id, LEASE, 2) == Claim()


async def test_a_retried_delivery_is_not_due_before_its_time_and_claimed_at_it(backend: Backend) -> None:
    delivery = await one(backend)
    at = from_epoch_ms(backend.clock() + 5000)
    await backend.store.retry(await claimed(backend, delivery.id), "boom", at)
    [state] = await backend.store.deliveries(delivery.event.id)
    assert (state.status, state.attempts, state.last_error, state.claim) == ("pending", 1, "boom", None)
    assert state.next_attempt_at == format_iso(at)
    backend.clock.advance(4.999)
    assert await backend.store.claim(delivery.id, LEASE, MAX_ATTEMPTS) == Claim(due_at=at)
    backend.clock.advance(0.001)
    again = await claimed(backend, delivery.id)
    assert (again.attempts, again.last_error) == (2, "boom")


async def test_a_completed_delivery_is_never_handed_out_again(backend: Backend) -> None:
    delivery = await one(backend)
    await backend.store.complete(await claimed(backend, delivery.id))
    assert await backend.store.claim(delivery.id, LEASE, MAX_ATTEMPTS) == Claim()
    backend.clock.advance(LEASE * 10)
    assert await backend.store.claim(delivery.id, LEASE, MAX_ATTEMPTS) == Claim()
    [done] = await backend.store.deliveries(delivery.event.id)
    assert (done.status, done.attempts, done.claim) == ("done", 1, None)


async def test_claiming_an_unknown_delivery_gives_nothing(backend: Backend) -> None:
    assert await backend.store.claim("del_unknown", LEASE, MAX_ATTEMPTS) == Claim()


async def test_a_buried_delivery_is_a_dead_letter_with_its_error(backend: Backend) -> None:
    target = handler()
    delivery = await dead(backend, target, "owner revoked")
    assert await backend.store.claim(delivery.id, LEASE, MAX_ATTEMPTS) == Claim()
    letter = await backend.store.dead_letter(delivery.id)
    assert letter is not None
    assert (letter.id, letter.event, letter.handler) == (delivery.id, delivery.event, target)
    assert (letter.status, letter.attempts, letter.last_error, letter.claim) == ("dead", 1, "owner revoked", None)


async def test_only_the_claim_holding_a_delivery_settles_it_but_anyone_completes_it(backend: Backend) -> None:
    delivery = await one(backend)
    stale = await claimed(backend, delivery.id)
    backend.clock.advance(LEASE + 1)
    current = await claimed(backend, delivery.id)
    await backend.store.retry(stale, "late failure", from_epoch_ms(backend.clock()))
    await backend.store.bury(stale, "late failure")
    [state] = await backend.store.deliveries(delivery.event.id)
    assert (state.status, state.attempts, state.claim) == ("running", 2, current.claim)
    await backend.store.retry(delivery, "never claimed", from_epoch_ms(backend.clock()))  # no claim at all
    assert await backend.store.deliveries(delivery.event.id) == [state]
    await backend.store.complete(stale)
    [done] = await backend.store.deliveries(delivery.event.id)
    assert done.status == "done"
    await backend.store.bury(current, "too late")
    assert await backend.store.deliveries(delivery.event.id) == [done]


# -- dead letters and replay -----------------------------------------------------------------------------


async def test_dead_letters_are_listed_oldest_first_per_tenant_or_all(backend: Backend) -> None:
    order = []
    for tenant in ("acme", "globex", "acme"):
        order.append(await dead(backend, handler(tenant=tenant)))
        backend.clock.advance(1)
    await one(backend)  # live work is not listed
    assert [d.id for d in await backend.store.dead_letters("acme")] == [order[0].id, order[2].id]
    assert [d.id for d in await backend.store.dead_letters("globex")] == [order[1].id]
    assert [d.id for d in await backend.store.dead_letters()] == [d.id for d in order]
    assert await backend.store.dead_letters("initech") == []
    [first, *_] = await backend.store.dead_letters()
    assert (first.event, first.status, first.last_error) == (order[0].event, "dead", "boom")


async def test_dead_letter_finds_only_dead_letters(backend: Backend) -> None:
    pending = await one(backend)
    assert await backend.store.dead_letter(pending.id) is None
    assert await backend.store.dead_letter("del_unknown") is None


async def test_a_replayed_dead_letter_is_pending_due_now_with_fresh_attempts(backend: Backend) -> None:
    delivery = await dead(backend, handler())
    backend.clock.advance(60)
    await backend.store.replay(delivery.id)
    assert await backend.store.dead_letters() == []
    assert await backend.store.dead_letter(delivery.id) is None
    [state] = await backend.store.deliveries(delivery.event.id)
    assert (state.status, state.attempts, state.last_error, state.handler) == ("pending", 0, None, delivery.handler)
    assert state.next_attempt_at == format_iso(backend.clock())
    again = await claimed(backend, delivery.id)
    assert again.attempts == 1


async def test_a_dead_letter_replayed_to_a_version_is_claimed_for_that_version(backend: Backend) -> None:
    target = handler(index=3, version=1)
    delivery = await dead(backend, target)
    await backend.store.replay(delivery.id, 7)
    again = await claimed(backend, delivery.id)
    assert again.handler == HandlerRef(target.tenant, target.module_id, 7, 3)


async def test_replay_refuses_unknown_ids_and_deliveries_that_are_not_dead(backend: Backend) -> None:
    with pytest.raises(NotFound) as unknown:
        await backend.store.replay("del_nope")
    assert unknown.value.message == "Dead letter del_nope not found"
    delivery = await one(backend)
    with pytest.raises(Conflict) as refused:
        await backend.store.replay(delivery.id)
    assert refused.value.message == (
        f"Delivery {delivery.id} is pending, not dead-lettered: only dead letters can be replayed"
    )
    await claimed(backend, delivery.id)
    with pytest.raises(Conflict, match="is running, not dead-lettered"):
        await backend.store.replay(delivery.id)


# -- purge ---------------------------------------------------------------------------------------------


async def test_purge_forgets_old_completed_deliveries_and_keeps_dead_letters_and_recent_work(
    backend: Backend,
) -> None:
    done_event, mixed_event, empty_event = event(), event(), event()
    await backend.store.add(done_event, [handler(0), handler(1)])
    await backend.store.add(mixed_event, [handler(0), handler(1)])
    await backend.store.add(empty_event, [])
    for delivery in await backend.store.deliveries(done_event.id):
        await backend.store.complete(await claimed(backend, delivery.id))
    done, failed = await backend.store.deliveries(mixed_event.id)
    await backend.store.complete(await claimed(backend, done.id))
    await backend.store.bury(await claimed(backend, failed.id), "boom")
    backend.clock.advance(3600)
    recent = await one(backend)
    await backend.store.complete(await claimed(backend, recent.id))
    pending = await one(backend)

    assert await backend.store.purge(from_epoch_ms(backend.clock() - 1000)) == 3
    assert await backend.store.deliveries(done_event.id) == []
    assert [d.id for d in await backend.store.deliveries(mixed_event.id)] == [failed.id]
    assert [d.id for d in await backend.store.dead_letters()] == [failed.id]
    assert [d.status for d in await backend.store.deliveries(recent.event.id)] == ["done"]
    assert [d.status for d in await backend.store.deliveries(pending.event.id)] == ["pending"]
    assert await backend.store.purge(from_epoch_ms(backend.clock() - 1000)) == 0
    # Forgotten events can be stored anew; one keeping a dead letter is still known, its purged delivery gone.
    assert await backend.store.add(done_event, [handler(0)])
    assert await backend.store.add(empty_event, [])
    assert not await backend.store.add(mixed_event, [handler(0), handler(1)])
    assert [d.id for d in await backend.store.deliveries(mixed_event.id)] == [failed.id]
