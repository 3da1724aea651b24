"""DynamoEntityStore under moto, beyond the contract suite: which requests it makes (key conditions, never a
scan, paging until the page is full), its key layout, edges outliving an interrupted delete, and its
answers beside the in-memory adapter's on every read path it has."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest
from mcpdo.adapters import dynamodb_store
from mcpdo.adapters.dynamodb_store import DynamoEntityStore
from mcpdo.adapters.dynamodb_table import DynamoTable
from mcpdo.adapters.memory_store import MemoryEntityStore
from mcpdo.errors import LimitExceeded, McpdoError
from mcpdo.ports import ListQuery, Ref
from mcpdo.query import parse_list_options
from mcpdo.records import RecordStore
from mcpdo.timeparse import format_iso

pytestmark = pytest.mark.anyio

T = "acme"
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


class RecordingTable(DynamoTable):
    """A DynamoTable that keeps every request it makes."""

    def __init__(self, name: str) -> None:
        super().__init__(boto3.client("dynamodb", region_name="us-east-1"), name, what="entity store")
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def raw(self, operation: str, **arguments: Any) -> dict[str, Any]:
        self.calls.append((operation, arguments))
        return await super().raw(operation, **arguments)

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.calls]

    def queries(self) -> list[dict[str, Any]]:
        return [arguments for operation, arguments in self.calls if operation == "query"]


class Clock:
    """The same instants, call by call, for each store; each instant comes twice, so times tie."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return BASE_MS + self.calls // 2


@pytest.fixture
async def table(state_table: str) -> AsyncIterator[RecordingTable]:
    recording = RecordingTable(state_table)
    yield recording
    await recording.close()


@pytest.fixture
def store(table: RecordingTable) -> DynamoEntityStore:
    return DynamoEntityStore(table, clock=Clock())


def q(**options: Any) -> ListQuery:
    return parse_list_options(options, now=None)


async def ids(store: RecordStore, type: str, **options: Any) -> list[str]:
    return [record["id"] for record in await store.list(T, type, q(**options))]


# -- requests ----------------------------------------------------------------------------------------------


async def test_twenty_creates_and_a_list_take_twenty_one_requests(
    store: DynamoEntityStore, table: RecordingTable
) -> None:
    for n in range(20):
        await store.create(T, "Item", {"n": n})
    assert [r["n"] for r in await store.list(T, "Item", q())] == list(range(20))
    assert table.operations() == ["put_item"] * 20 + ["query"]
    (listing,) = table.queries()
    assert listing["IndexName"] == "gsi1" and listing["KeyConditionExpression"] == "#h = :h"
    assert listing["ExpressionAttributeValues"][":h"] == {"S": "ENT#acme#Item"}


async def test_a_filtered_page_keeps_reading_until_it_is_full(
    store: DynamoEntityStore, table: RecordingTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dynamodb_store, "_MIN_FILTERED_BATCH", 1)  # Limit = what the page still needs
    for n in range(20):
        await store.create(T, "Item", {"n": n, "fourth": n % 4 == 0})
    table.calls.clear()
    page = await store.list(T, "Item", q(where={"fourth": True}, limit=3))
    assert [r["n"] for r in page] == [0, 4, 8]
    queries = table.queries()
    assert len(queries) > 1 and all("ExclusiveStartKey" in query for query in queries[1:])
    assert sum(query["Limit"] for query in queries) < 20  # stopped once full, not at the partition's end


async def test_no_request_is_ever_a_scan(store: DynamoEntityStore, table: RecordingTable) -> None:
    await _dataset(store)
    for options in _OPTIONS:
        await store.list(T, "Order", q(**options))
    await store.related(T, Ref("Order", "a1"), None, "both")
    await store.delete(T, "Order", "a1")
    assert not {"scan", "Scan"} & set(table.operations())


@pytest.mark.parametrize(
    ("options", "index", "condition", "forward"),
    [
        ({}, "gsi1", "#h = :h", True),
        ({"sort": {"createdAt": "desc"}}, "gsi1", "#h = :h", False),
        ({"sort": "-id"}, None, "#h = :h", False),
        ({"sort": {"updatedAt": "asc"}}, "gsi2", "#h = :h", True),
        ({"sort": {"updatedAt": "desc", "createdAt": "desc"}}, "gsi2", "#h = :h", False),
        ({"where": {"createdAt": {"gte": BASE_MS}}}, "gsi1", "#h = :h AND #r >= :low", True),
        ({"where": {"createdAt": {"before": BASE_MS}}}, "gsi1", "#h = :h AND #r <= :high", True),
        ({"where": {"id": {"startsWith": "b"}}, "sort": "id"}, None, "#h = :h AND #r BETWEEN :low AND :high", True),
        ({"where": {"id": {"startsWith": "b"}}, "sort": "n"}, None, "#h = :h AND #r BETWEEN :low AND :high", True),
        ({"where": {"updatedAt": {"after": BASE_MS}}, "sort": "n"}, "gsi2", "#h = :h AND #r >= :low", True),
        ({"sort": {"n": "desc"}}, None, "#h = :h", True),
    ],
)
async def test_listings_are_served_by_key_conditions(
    store: DynamoEntityStore,
    table: RecordingTable,
    options: dict[str, Any],
    index: str | None,
    condition: str,
    forward: bool,
) -> None:
    await _dataset(store)
    table.calls.clear()
    await store.list(T, "Order", q(**options))
    (query,) = table.queries()
    assert query.get("IndexName") == index
    assert query["KeyConditionExpression"] == condition
    assert query["ScanIndexForward"] is forward
    assert query.get("ConsistentRead", False) is (index is None)


async def test_where_naming_ids_reads_those_items_only(store: DynamoEntityStore, table: RecordingTable) -> None:
    await _dataset(store)
    table.calls.clear()
    assert await ids(store, "Order", where={"id": {"in": ["a1", "b2", "zz", "b2"]}}) == ["b2", "a1"]
    assert await ids(store, "Order", where={"id": "a3", "n": {"gt": 0}}) == ["a3"]
    assert await ids(store, "Order", where={"status": {"in": []}}) == []
    assert table.operations() == ["batch_get_item", "batch_get_item"]


# -- keys --------------------------------------------------------------------------------------------------


async def test_every_key_carries_its_namespace_and_the_tenant(store: DynamoEntityStore, table: RecordingTable) -> None:
    order = await store.create(T, "Order", {"id": "ord_1", "createdAt": BASE_MS})
    await store.create("globex", "Order", {"id": "ord_1"})
    await store.create(T, "Person", {"id": "per_1"})
    await store.relate(T, Ref("Order", "ord_1"), "customer", Ref("Person", "per_1"))
    client = table.client
    item = client.get_item(TableName=table.name, Key={"pk": {"S": "ENT#acme#Order"}, "sk": {"S": "ord_1"}})["Item"]
    assert item["gsi1pk"] == item["gsi2pk"] == {"S": "ENT#acme#Order"}
    assert item["gsi1sk"]["S"].endswith("#ord_1") and item["gsi2sk"]["S"].endswith("#ord_1")
    assert item["data"] == {"S": "{}"} and item["version"] == {"N": "1"} and order["version"] == 1
    edge_key = {"pk": {"S": "REL#acme#Order#ord_1"}, "sk": {"S": "customer#Person#per_1"}}
    edge = client.get_item(TableName=table.name, Key=edge_key)["Item"]
    assert edge["gsi2pk"] == {"S": "RIN#acme#Person#per_1"} and edge["gsi2sk"] == {"S": "customer#Order#ord_1"}


async def test_items_of_other_adapters_in_the_table_are_never_read(
    store: DynamoEntityStore, table: RecordingTable
) -> None:
    table.client.put_item(TableName=table.name, Item={"pk": {"S": "KEY#acme"}, "sk": {"S": "x"}})
    await store.create(T, "Order", {"id": "o1"})
    assert await ids(store, "Order") == ["o1"]


async def test_data_round_trips_exactly(store: DynamoEntityStore) -> None:
    data = {"big": 2**70, "float": 0.1, "whole": 1.0, "nested": {"a": [1, None, "é", {"b": False}]}, "empty": ""}
    created = await store.create(T, "Thing", {"id": "t1", **data})
    fetched = await store.get(T, "Thing", "t1")
    assert fetched == created and {key: fetched[key] for key in data} == data
    assert isinstance(fetched["whole"], float) and isinstance(fetched["big"], int)


# -- edges -------------------------------------------------------------------------------------------------


async def test_edges_left_by_an_interrupted_delete_never_come_back(
    store: DynamoEntityStore, table: RecordingTable
) -> None:
    await store.create(T, "Order", {"id": "ord_1"})
    await store.create(T, "Person", {"id": "per_1"})
    first = await store.relate(T, Ref("Order", "ord_1"), "customer", Ref("Person", "per_1"))
    # The record goes, its edges stay (as when a delete stops before removing them), then it comes back.
    table.client.delete_item(TableName=table.name, Key={"pk": {"S": "ENT#acme#Person"}, "sk": {"S": "per_1"}})
    await store.create(T, "Person", {"id": "per_1"})
    assert await store.related(T, Ref("Order", "ord_1"), None, "both") == []
    assert await store.related(T, Ref("Person", "per_1"), None, "both") == []
    again = await store.relate(T, Ref("Order", "ord_1"), "customer", Ref("Person", "per_1"))
    assert again["createdAt"] > first["createdAt"]  # a new edge replaced the dead one
    assert [r["id"] for r in await store.related(T, Ref("Person", "per_1"), "customer", "in")] == ["ord_1"]


async def test_a_relation_name_is_matched_whole(store: DynamoEntityStore) -> None:
    await store.create(T, "Order", {"id": "ord_1"})
    await store.create(T, "Person", {"id": "per_1"})
    await store.create(T, "Person", {"id": "per_2"})
    await store.relate(T, Ref("Order", "ord_1"), "a#b", Ref("Person", "per_1"))
    await store.relate(T, Ref("Order", "ord_1"), "a", Ref("Person", "per_2"))
    assert [r["id"] for r in await store.related(T, Ref("Order", "ord_1"), "a", "out")] == ["per_2"]
    assert [r["id"] for r in await store.related(T, Ref("Person", "per_1"), "a", "in")] == []
    assert [r["id"] for r in await store.related(T, Ref("Person", "per_1"), "a#b", "in")] == ["ord_1"]


async def test_a_self_loop_is_related_and_deleted_once(store: DynamoEntityStore) -> None:
    await store.create(T, "Person", {"id": "per_1"})
    await store.relate(T, Ref("Person", "per_1"), "self", Ref("Person", "per_1"))
    assert [r["id"] for r in await store.related(T, Ref("Person", "per_1"), None, "both")] == ["per_1"]
    assert await store.delete(T, "Person", "per_1") is True


# -- answers beside the in-memory adapter's --------------------------------------------------------------


async def _dataset(store: RecordStore) -> None:
    rows: list[dict[str, Any]] = [
        {"id": "a1", "n": 3, "status": "paid"},
        {"id": "b2", "n": 1, "status": "pending", "createdAt": BASE_MS - 5000},
        {"id": "a3", "n": 3},
        {"id": "b10", "n": "x", "status": "paid", "createdAt": format_iso(BASE_MS + 2)},
        {"id": "c1", "n": None, "status": "pending"},
        {"id": "b1", "n": 2.5, "status": "paid", "createdAt": BASE_MS + 1},
        {"id": "a2", "status": "cancelled"},
        {"id": "c2", "n": -1, "status": "pending", "createdAt": BASE_MS - 5000},
    ]
    for row in rows:
        await store.create(T, "Order", row)
    for id in ("b2", "c1", "a1"):
        await store.update(T, "Order", id, {"n": {"$inc": 1}} if id != "c1" else {"touched": True})
    for target in ("a3", "b1"):
        await store.relate(T, Ref("Order", "a1"), "next", Ref("Order", target))


_WHERES: list[dict[str, Any] | None] = [
    None,
    {"status": "paid"},
    {"id": {"startsWith": "b"}},
    {"id": {"gt": "a3", "lte": "b2"}},
    {"id": {"in": ["c2", "a1", "nope"]}},
    {"createdAt": {"gte": BASE_MS, "lt": BASE_MS + 2}},
    {"createdAt": BASE_MS - 5000},
    {"updatedAt": {"after": BASE_MS + 4}},
    {"n": {"gte": 2}, "createdAt": {"before": BASE_MS + 100}},
]
_SORTS: list[Any] = [
    None,
    {"createdAt": "desc"},
    "id",
    "-id",
    {"updatedAt": "asc"},
    {"updatedAt": "desc"},
    {"updatedAt": "desc", "createdAt": "desc"},
    {"n": "asc"},
    {"$type": "desc", "createdAt": "asc"},
]
_OPTIONS = [{"where": where, "sort": sort} for where in _WHERES for sort in _SORTS]


async def _answer(store: RecordStore, options: dict[str, Any]) -> Any:
    try:
        return await store.list(T, "Order", q(**options))
    except McpdoError as exc:
        return (type(exc).__name__, str(exc))


async def _walk(store: RecordStore, options: dict[str, Any]) -> list[list[str]]:
    """The pages of a listing, three records each, followed by cursor."""
    pages: list[list[str]] = []
    cursor = None
    while page := await ids(store, "Order", **options, limit=3, cursor=cursor):
        pages.append(page)
        cursor = page[-1]
    return pages


async def test_every_read_path_answers_as_the_memory_adapter_does(store: DynamoEntityStore) -> None:
    memory = MemoryEntityStore(clock=Clock())
    await _dataset(memory)
    await _dataset(store)
    for options in _OPTIONS:
        assert await _answer(store, options) == await _answer(memory, options), options
        assert await _walk(store, options) == await _walk(memory, options), options
        for extra in ({"offset": 2, "limit": 2}, {"cursor": "a2"}, {"cursor": "c2", "offset": 1}, {"cursor": "zz"}):
            assert await _answer(store, options | extra) == await _answer(memory, options | extra), (options, extra)
    for direction in ("out", "in", "both"):
        for ref in (Ref("Order", "a1"), Ref("Order", "b1")):
            assert await store.related(T, ref, None, direction) == await memory.related(T, ref, None, direction)


async def test_a_record_past_dynamodbs_item_size_is_refused_naming_the_limit_and_nothing_is_stored(
    store: DynamoEntityStore,
) -> None:
    with pytest.raises(McpdoError) as refused:
        await store.create(T, "Blob", {"id": "blob_1", "text": "x" * 500_000})
    assert isinstance(refused.value, LimitExceeded)
    assert "DynamoDB items hold at most 400 KB" in refused.value.message
    assert await store.get(T, "Blob", "blob_1") is None
