"""The core event services over the in-memory adapters: no files, no processes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from mcpdo.adapters.memory import MemoryMailer, MemoryRunLog
from mcpdo.adapters.memory_events import MemoryDeliveryStore, MemorySchedules, MemorySubscriptions, MemoryTransport
from mcpdo.errors import Conflict, LimitExceeded
from mcpdo.events import Deliveries, HandlerOutcome, Publisher, RetryPolicy
from mcpdo.events.delivery import MAX_ERROR_LENGTH
from mcpdo.ports import Event, HandlerRef

from tests.contract.events_backends import module, subscription
from tests.contract.test_events import event

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _never(handler: HandlerRef, ev: Event) -> HandlerOutcome:
    raise AssertionError("not invoked here")


class Ports:
    def __init__(self, *, transport: MemoryTransport | None = None, max_deliveries: int = 100) -> None:
        self.subscriptions = MemorySubscriptions()
        self.schedules = MemorySchedules()
        self.store = MemoryDeliveryStore()
        self.publisher = Publisher(
            self.subscriptions, self.store, transport=transport, max_deliveries_per_send=max_deliveries
        )
        self.deliveries = Deliveries(
            self.store,
            self.publisher,
            _never,
            MemoryRunLog(),
            subscriptions=self.subscriptions,
            schedules=self.schedules,
            mailer=MemoryMailer(),
        )

    async def live(self, version: int, *patterns: str) -> list[HandlerRef]:
        mod = module(version=version)
        subs = [subscription(mod, index, pattern) for index, pattern in enumerate(patterns)]
        await self.subscriptions.sync(mod, subs)
        return [sub.handler for sub in subs]

    async def dead_letter(self) -> str:
        [claimed] = await self.store.claim_due(1, 30, 4)
        await self.deliveries.fail(claimed, "broken", retry=False)
        return claimed.id


async def test_with_a_transport_send_hands_the_event_over_and_its_consumer_routes_it_once() -> None:
    transport = MemoryTransport()
    ports = Ports(transport=transport)
    [handler] = await ports.live(1, "Order.created")
    sent = event()
    await ports.publisher.publish(sent)
    assert await ports.store.deliveries(sent.id) == []  # accepted by the transport, not routed yet
    [taken] = transport.take()
    assert taken == sent
    assert await ports.publisher.route(taken) is True
    assert await ports.publisher.route(taken) is False  # a transport that delivers twice changes nothing
    assert [d.handler for d in await ports.store.deliveries(sent.id)] == [handler]


async def test_with_a_transport_an_over_wide_send_is_refused_before_the_transport_holds_it() -> None:
    transport = MemoryTransport()
    ports = Ports(transport=transport, max_deliveries=2)
    await ports.live(1, "Order.created", "Order.*", "*")
    with pytest.raises(LimitExceeded, match="would make 3 deliveries, past the limit of 2"):
        await ports.publisher.publish(event())
    assert transport.take() == []


def test_retries_wait_one_two_four_base_periods_then_none_is_left() -> None:
    policy = RetryPolicy(max_retries=3, backoff_base=0.5)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [
        timedelta(seconds=0.5),
        timedelta(seconds=1),
        timedelta(seconds=2),
        None,
    ]
    assert RetryPolicy(max_retries=0).delay(1) is None
    with pytest.raises(ValueError, match="must not be negative"):
        RetryPolicy(max_retries=-1)


async def test_a_replayed_dead_letter_runs_the_live_version_of_its_handler() -> None:
    ports = Ports()
    await ports.live(1, "Order.created")
    await ports.publisher.publish(event())
    dead = await ports.dead_letter()
    await ports.live(3, "Order.created")  # a fix registered since
    await ports.deliveries.replay(dead)
    [again] = await ports.store.claim_due(1, 30, 4)
    assert (again.id, again.handler.version, again.attempts) == (dead, 3, 1)


async def test_a_dead_letter_whose_handler_the_live_version_dropped_stays_dead_with_a_reason() -> None:
    ports = Ports()
    await ports.live(1, "Order.created")
    await ports.publisher.publish(event())
    dead = await ports.dead_letter()
    await ports.live(2, "Order.paid")
    with pytest.raises(Conflict, match=r"has no handler #0 for Order\.created"):
        await ports.deliveries.replay(dead)
    assert [d.id for d in await ports.store.dead_letters()] == [dead]


async def test_a_failure_text_is_clipped_before_it_is_stored() -> None:
    ports = Ports()
    await ports.live(1, "Order.created")
    await ports.publisher.publish(event())
    [claimed] = await ports.store.claim_due(1, 30, 4)
    await ports.deliveries.fail(claimed, "x" * (MAX_ERROR_LENGTH * 3), retry=False)
    [dead] = await ports.store.dead_letters()
    assert dead.last_error == "x" * MAX_ERROR_LENGTH
