"""What only the DynamoDB delivery store and run log do: item limits, fan-outs past one batch or transaction,
the indexes and TTL attributes an item carries in each state, and the runs log's age bound."""

from __future__ import annotations

from typing import Any

import pytest
from mcpdo.adapters.dynamodb_deliveries import DynamoDeliveryStore, delivery_id
from mcpdo.adapters.dynamodb_runs import DynamoRunLog
from mcpdo.adapters.dynamodb_table import DynamoTable, Item
from mcpdo.errors import LimitExceeded
from mcpdo.ids import new_id
from mcpdo.ports import Event, HandlerRef, Run
from mcpdo.timeparse import from_epoch_ms

from tests.contract.dynamodb_backends import dynamo_table
from tests.contract.events_backends import FakeClock

pytestmark = pytest.mark.anyio

LEASE = 30.0
DAY = 86_400.0


class SplitBatches(DynamoTable):
    """The state table, whose first BatchGetItem answers one key and leaves the rest unprocessed."""

    split = False

    async def raw(self, operation: str, **arguments: Any) -> dict[str, Any]:
        if operation != "batch_get_item" or self.split:
            return await super().raw(operation, **arguments)
        self.split = True
        request = arguments["RequestItems"][self.name]
        first, *rest = request["Keys"]
        answer = await super().raw(operation, RequestItems={self.name: {**request, "Keys": [first]}})
        return {**answer, "UnprocessedKeys": {self.name: {**request, "Keys": rest}}}


@pytest.fixture
def table(request: pytest.FixtureRequest) -> DynamoTable:
    return dynamo_table(request)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def event(data: object = None) -> Event:
    event_id = new_id("Event")
    return Event(event_id, "Order.created", {"n": 1} if data is None else data, "test", "t", "acme", event_id)


def handlers(count: int) -> list[HandlerRef]:
    return [HandlerRef("acme", "https://acme.test/orders", 1, index) for index in range(count)]


async def delivery_item(table: DynamoTable, id: str) -> Item:
    found = await table.call("get_item", Key={"pk": {"S": f"DLV#{id}"}, "sk": {"S": "DLV"}}, ConsistentRead=True)
    item: Item = found["Item"]
    return item


async def test_delivery_ids_are_derived_from_the_event_and_the_handler(table: DynamoTable, clock: FakeClock) -> None:
    store = DynamoDeliveryStore(table, clock=clock)
    sent = event()
    await store.add(sent, handlers(2))
    assert [d.id for d in await store.deliveries(sent.id)] == sorted(
        delivery_id(sent.id, ref.handler_id) for ref in handlers(2)
    )
    assert delivery_id(sent.id, "m#0") != delivery_id(sent.id, "m#1") != delivery_id("other", "m#1")


async def test_an_event_too_large_for_an_item_is_refused_and_not_kept(table: DynamoTable, clock: FakeClock) -> None:
    store = DynamoDeliveryStore(table, clock=clock)
    sent = event({"blob": "x" * 500_000})
    with pytest.raises(LimitExceeded, match="400 KB"):
        await store.add(sent, handlers(1))
    assert await store.deliveries(sent.id) == []


async def test_an_event_with_more_deliveries_than_one_batch_is_read_and_purged_whole(
    table: DynamoTable, clock: FakeClock
) -> None:
    store = DynamoDeliveryStore(SplitBatches(table.client, table.name, what=table.what), clock=clock)
    sent = event()
    await store.add(sent, handlers(150))
    deliveries = await store.deliveries(sent.id)  # its first batch comes back partly unprocessed
    assert sorted(d.handler.index for d in deliveries) == list(range(150))
    for delivery in deliveries:
        claim = await store.claim(delivery.id, LEASE, 4)
        assert claim.delivery is not None
        await store.complete(claim.delivery)
    clock.advance(60)
    assert await store.purge(from_epoch_ms(clock())) == 150  # two transactions of at most 100 writes
    assert await store.deliveries(sent.id) == []
    assert await store.add(sent, handlers(1))  # the event was forgotten with its last delivery


async def test_items_join_the_dead_and_done_indexes_only_in_those_states(table: DynamoTable, clock: FakeClock) -> None:
    store = DynamoDeliveryStore(table, clock=clock, keep_done_days=3)
    sent = event()
    await store.add(sent, handlers(1))
    [pending] = await store.deliveries(sent.id)
    assert not {"gsi1pk", "gsi2pk", "ttl"} & (await delivery_item(table, pending.id)).keys()
    claim = await store.claim(pending.id, LEASE, 4)
    assert claim.delivery is not None
    await store.bury(claim.delivery, "boom")
    item = await delivery_item(table, pending.id)
    assert (item["gsi1pk"]["S"], item["gsi2pk"]["S"]) == ("DLVDEAD#acme", "DLVDEAD")
    assert item["gsi1sk"] == item["gsi2sk"] == {"S": f"{clock():015d}#{pending.id}"}
    await store.replay(pending.id)
    assert not {"gsi1pk", "gsi2pk", "ttl"} & (await delivery_item(table, pending.id)).keys()
    claim = await store.claim(pending.id, LEASE, 4)
    assert claim.delivery is not None
    clock.advance(10)
    await store.complete(claim.delivery)
    item = await delivery_item(table, pending.id)
    assert (item["gsi1pk"]["S"], item["gsi1sk"]["S"]) == ("DLVDONE", f"{clock():015d}#{pending.id}")
    assert "gsi2pk" not in item and int(item["ttl"]["N"]) == clock() // 1000 + 3 * 86_400


async def test_an_event_older_than_the_done_retention_gets_no_missing_deliveries_back(
    table: DynamoTable, clock: FakeClock
) -> None:
    # By then TTL may have removed its done deliveries: creating them again would run them again.
    store = DynamoDeliveryStore(table, clock=clock, keep_done_days=3)
    sent = event()
    await store.add(sent, handlers(2))
    kept, lost = await store.deliveries(sent.id)
    await table.call("delete_item", Key={"pk": {"S": f"DLV#{lost.id}"}, "sk": {"S": "DLV"}})
    clock.advance(3 * DAY)
    assert not await store.add(sent, handlers(2))
    assert await store.deliveries(sent.id) == [kept]


# -- runs log ------------------------------------------------------------------------------------------


def run(tenant: str = "acme") -> Run:
    ref = HandlerRef(tenant, "https://acme.test/orders", 1, 0)
    return Run(id=new_id("Run"), handler=ref, status="ok", started_at="2026-01-01T00:00:00.000Z", duration_ms=3)


async def test_runs_older_than_keep_days_are_not_listed_and_carry_a_ttl(table: DynamoTable, clock: FakeClock) -> None:
    runs = DynamoRunLog(table, keep_days=2, clock=clock)
    old = [run("acme"), run("globex")]
    for entry in old:
        await runs.record_run(entry)
    clock.advance(DAY)
    recent = run("acme")
    await runs.record_run(recent)
    assert await runs.runs() == [recent, *reversed(old)]
    clock.advance(DAY)  # the first two expire now; moto never deletes them
    assert await runs.runs("acme") == [recent]
    assert await runs.runs("globex") == []
    assert await runs.runs(limit=1) == [recent]
    found = await table.call(
        "query", KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "RUN#acme"}}
    )
    assert sorted(int(item["ttl"]["N"]) for item in found["Items"]) == [
        (clock() - int(2 * DAY * 1000)) // 1000 + 2 * 86_400,
        (clock() - int(DAY * 1000)) // 1000 + 2 * 86_400,
    ]


async def test_adding_again_after_a_crash_mid_add_creates_the_missing_deliveries(
    table: DynamoTable, clock: FakeClock
) -> None:
    # `add` writes the event, then each delivery: a crash in between leaves some out. The SQS message that
    # carried the event comes back, and routing it again must fill them in (the same deliveries, once).
    store = DynamoDeliveryStore(table, clock=clock)
    event_id = new_id("Event")
    sent = Event(event_id, "Order.created", {"n": 1}, "test", "2026-01-01T00:00:00.000Z", "acme", event_id)
    handlers = [HandlerRef("acme", "https://acme.test/orders", 1, index) for index in (0, 1)]
    assert await store.add(sent, handlers)
    kept, lost = await store.deliveries(sent.id)
    await table.call("delete_item", Key={"pk": {"S": f"DLV#{lost.id}"}, "sk": {"S": "DLV"}})
    assert await store.deliveries(sent.id) == [kept]
    clock.advance(5)
    assert not await store.add(sent, handlers)
    assert await store.deliveries(sent.id) == [kept, lost]  # the same delivery, as first added
