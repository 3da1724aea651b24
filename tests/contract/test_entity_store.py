"""The EntityStore contract: every adapter must pass all of it (see conftest's STORE_FACTORIES)."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import pytest
from mcpdo.errors import Conflict, InputError, NotFound
from mcpdo.ports import EntityStore, ListQuery, Ref
from mcpdo.query import parse_list_options
from mcpdo.timeparse import format_iso, now_ms

pytestmark = pytest.mark.anyio

T = "acme"
OTHER = "globex"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
HOUR = 3_600_000


def q(**options: Any) -> ListQuery:
    return parse_list_options(options)


async def ids(store: EntityStore, type: str, **options: Any) -> list[str]:
    return [record["id"] for record in await store.list(T, type, q(**options))]


async def seed(store: EntityStore, type: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        await store.create(T, type, row)


# -- create / get ------------------------------------------------------------------------------------


async def test_create_returns_the_data_with_id_type_timestamps_and_version_one(store: EntityStore) -> None:
    record = await store.create(T, "Order", {"status": "pending", "total": 10})
    assert list(record) == ["id", "$type", "status", "total", "createdAt", "updatedAt", "version"]
    assert record["$type"] == "Order"
    assert record["status"] == "pending" and record["total"] == 10
    assert ISO_MS.match(record["createdAt"]) and ISO_MS.match(record["updatedAt"])
    assert record["version"] == 1


async def test_generated_ids_carry_the_type_prefix_and_are_unique_and_url_safe(store: EntityStore) -> None:
    orders = [await store.create(T, "Order", {"n": n}) for n in range(50)]
    person = await store.create(T, "Person", {"name": "Alice"})
    product = await store.create(T, "Product", {"name": "Widget"})
    assert all(re.match(r"^ord_[a-z0-9]+$", order["id"]) for order in orders)
    assert len({order["id"] for order in orders}) == 50
    assert person["id"].startswith("per_")
    assert product["id"].startswith("prod_")


async def test_get_returns_the_same_record_as_create_and_none_when_missing(store: EntityStore) -> None:
    created = await store.create(T, "Order", {"status": "pending", "customer": {"email": "a@example.com"}})
    assert await store.get(T, "Order", created["id"]) == created
    assert await store.get(T, "Order", "ord_missing") is None
    assert await store.get(T, "Person", created["id"]) is None


async def test_create_keeps_an_id_given_in_the_data(store: EntityStore) -> None:
    record = await store.create(T, "Order", {"id": "ord_1", "status": "new"})
    assert record["id"] == "ord_1"
    assert (await store.get(T, "Order", "ord_1")) == record


async def test_create_with_a_duplicate_id_is_a_conflict_and_keeps_the_first(store: EntityStore) -> None:
    await store.create(T, "Order", {"id": "ord_1", "status": "first"})
    with pytest.raises(Conflict, match=r"^Order ord_1 already exists$"):
        await store.create(T, "Order", {"id": "ord_1", "status": "second"})
    record = await store.get(T, "Order", "ord_1")
    assert record is not None and record["status"] == "first"


async def test_the_same_id_may_be_used_by_two_types(store: EntityStore) -> None:
    await store.create(T, "Order", {"id": "x_1"})
    await store.create(T, "Invoice", {"id": "x_1"})
    assert await store.get(T, "Invoice", "x_1") is not None


@pytest.mark.parametrize("bad_id", ["", "has space", "a/b", "x" * 129, 42])
async def test_create_with_an_invalid_id_is_refused(store: EntityStore, bad_id: object) -> None:
    with pytest.raises(InputError, match="id"):
        await store.create(T, "Order", {"id": bad_id})


async def test_create_honours_a_given_created_at_normalized_to_utc(store: EntityStore) -> None:
    record = await store.create(T, "Order", {"createdAt": "2026-01-15T10:00:00+02:00"})
    assert record["createdAt"] == "2026-01-15T08:00:00.000Z"
    from_ms = await store.create(T, "Order", {"createdAt": 1767225600000})
    assert from_ms["createdAt"] == "2026-01-01T00:00:00.000Z"


async def test_create_with_an_unparseable_created_at_names_the_field_and_value(store: EntityStore) -> None:
    with pytest.raises(InputError, match=r"createdAt.*'last tuesday-ish'"):
        await store.create(T, "Order", {"createdAt": "last tuesday-ish"})


async def test_create_ignores_type_updated_at_and_version_in_the_data(store: EntityStore) -> None:
    record = await store.create(
        T, "Order", {"$type": "Hack", "updatedAt": "1999-01-01T00:00:00Z", "version": 99, "a": 1}
    )
    assert record["$type"] == "Order" and record["version"] == 1
    assert record["updatedAt"] != "1999-01-01T00:00:00.000Z"
    assert list(record) == ["id", "$type", "a", "createdAt", "updatedAt", "version"]


async def test_create_with_non_json_data_is_refused(store: EntityStore) -> None:
    with pytest.raises(InputError):
        await store.create(T, "Order", {"total": float("nan")})


# -- update ------------------------------------------------------------------------------------------


async def test_update_merges_shallowly_and_bumps_version_and_updated_at(store: EntityStore) -> None:
    created = await store.create(T, "Order", {"status": "pending", "customer": {"name": "A", "tier": 1}})
    updated = await store.update(T, "Order", created["id"], {"status": "paid", "customer": {"name": "B"}})
    assert updated["status"] == "paid"
    assert updated["customer"] == {"name": "B"}
    assert updated["version"] == 2
    assert updated["createdAt"] == created["createdAt"]
    assert updated["updatedAt"] >= created["updatedAt"]
    assert list(updated) == ["id", "$type", "status", "customer", "createdAt", "updatedAt", "version"]
    assert await store.get(T, "Order", created["id"]) == updated


async def test_update_of_a_missing_record_is_not_found(store: EntityStore) -> None:
    with pytest.raises(NotFound, match=r"^Order ord_123 not found$"):
        await store.update(T, "Order", "ord_123", {"status": "paid"})


async def test_update_inc_adds_atomically_and_counts_a_missing_field_as_zero(store: EntityStore) -> None:
    product = await store.create(T, "Product", {"stock": 10})
    after = await store.update(T, "Product", product["id"], {"stock": {"$inc": -2}, "sold": {"$inc": 2}})
    assert after["stock"] == 8 and after["sold"] == 2
    after = await store.update(T, "Product", product["id"], {"stock": {"$inc": 0.5}})
    assert after["stock"] == 8.5


async def test_update_inc_on_a_non_numeric_field_names_the_field(store: EntityStore) -> None:
    product = await store.create(T, "Product", {"name": "Widget"})
    with pytest.raises(InputError, match="name"):
        await store.update(T, "Product", product["id"], {"name": {"$inc": 1}})
    with pytest.raises(InputError, match="stock"):
        await store.update(T, "Product", product["id"], {"stock": {"$inc": "1"}})


async def test_update_unset_removes_a_field(store: EntityStore) -> None:
    record = await store.create(T, "Order", {"status": "pending", "note": "x"})
    after = await store.update(T, "Order", record["id"], {"note": {"$unset": True}})
    assert "note" not in after and after["status"] == "pending"


async def test_update_with_stale_if_version_is_refused_and_changes_nothing(store: EntityStore) -> None:
    record = await store.create(T, "Order", {"id": "ord_1", "status": "pending"})
    await store.update(T, "Order", "ord_1", {"status": "paid"}, if_version=1)
    await store.update(T, "Order", "ord_1", {"status": "shipped"})
    message = r"^Version conflict on Order ord_1: expected version 2, found 3$"
    with pytest.raises(Conflict, match=message):
        await store.update(T, "Order", "ord_1", {"status": "lost"}, if_version=2)
    current = await store.get(T, "Order", record["id"])
    assert current is not None and current["status"] == "shipped" and current["version"] == 3


async def test_update_refuses_to_change_id_or_type_but_accepts_them_unchanged(store: EntityStore) -> None:
    record = await store.create(T, "Order", {"status": "pending"})
    with pytest.raises(InputError, match="id"):
        await store.update(T, "Order", record["id"], {"id": "ord_other"})
    with pytest.raises(InputError, match=r"\$type"):
        await store.update(T, "Order", record["id"], {"$type": "Invoice"})
    same = await store.update(T, "Order", record["id"], {**record, "status": "paid"})
    assert same["status"] == "paid" and same["version"] == 2


async def test_concurrent_increments_from_threads_are_never_lost(store: EntityStore) -> None:
    counter = await store.create(T, "Counter", {"id": "c_1", "value": 0})
    errors: list[BaseException] = []

    def worker() -> None:
        async def run() -> None:
            for _ in range(50):
                await store.update(T, "Counter", counter["id"], {"value": {"$inc": 1}})

        try:
            asyncio.run(run())
        except BaseException as exc:  # surfaced below; a thread cannot raise into the test
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    final = await store.get(T, "Counter", counter["id"])
    assert final is not None and final["value"] == 400 and final["version"] == 401


async def test_concurrent_increments_from_tasks_are_never_lost(store: EntityStore) -> None:
    await store.create(T, "Counter", {"id": "c_1", "value": 0})
    await asyncio.gather(*(store.update(T, "Counter", "c_1", {"value": {"$inc": 2}}) for _ in range(100)))
    final = await store.get(T, "Counter", "c_1")
    assert final is not None and final["value"] == 200


# -- delete ------------------------------------------------------------------------------------------


async def test_delete_returns_true_once_then_false(store: EntityStore) -> None:
    record = await store.create(T, "Order", {"status": "pending"})
    assert await store.delete(T, "Order", record["id"]) is True
    assert await store.get(T, "Order", record["id"]) is None
    assert await store.delete(T, "Order", record["id"]) is False


# -- tenants -----------------------------------------------------------------------------------------


async def test_tenants_never_see_each_others_records_or_ids(store: EntityStore) -> None:
    mine = await store.create(T, "Order", {"id": "ord_1", "status": "pending"})
    theirs = await store.create(OTHER, "Order", {"id": "ord_1", "status": "theirs"})
    assert theirs["status"] == "theirs"
    assert await store.get(T, "Order", "ord_1") == mine
    assert [r["status"] for r in await store.list(OTHER, "Order", q())] == ["theirs"]
    assert await store.list(OTHER, "Order", q(where={"status": "pending"})) == []
    assert await store.get("nobody", "Order", "ord_1") is None


async def test_tenants_cannot_update_or_delete_each_others_records(store: EntityStore) -> None:
    await store.create(T, "Order", {"id": "ord_1", "status": "pending"})
    with pytest.raises(NotFound):
        await store.update(OTHER, "Order", "ord_1", {"status": "stolen"})
    assert await store.delete(OTHER, "Order", "ord_1") is False
    record = await store.get(T, "Order", "ord_1")
    assert record is not None and record["status"] == "pending"


async def test_tenants_cannot_relate_to_or_list_relations_of_each_others_records(store: EntityStore) -> None:
    await store.create(T, "Order", {"id": "ord_1"})
    await store.create(T, "Person", {"id": "per_1"})
    await store.create(OTHER, "Order", {"id": "ord_2"})
    await store.relate(T, Ref("Order", "ord_1"), "customer", Ref("Person", "per_1"))
    with pytest.raises(NotFound):
        await store.relate(OTHER, Ref("Order", "ord_2"), "customer", Ref("Person", "per_1"))
    assert await store.related(OTHER, Ref("Order", "ord_1"), None, "both") == []
    assert await store.related(OTHER, Ref("Person", "per_1"), None, "both") == []


async def test_a_cursor_from_another_tenant_is_unknown(store: EntityStore) -> None:
    await store.create(OTHER, "Order", {"id": "ord_9"})
    with pytest.raises(InputError, match="cursor"):
        await store.list(T, "Order", q(cursor="ord_9"))


# -- relations ---------------------------------------------------------------------------------------


async def _order_and_people(store: EntityStore) -> None:
    await store.create(T, "Order", {"id": "ord_1"})
    for person in ("per_1", "per_2", "per_3"):
        await store.create(T, "Person", {"id": person, "name": person})


async def test_relate_returns_the_edge_and_is_idempotent(store: EntityStore) -> None:
    await _order_and_people(store)
    edge = await store.relate(T, Ref("Order", "ord_1"), "customer", Ref("Person", "per_1"))
    assert edge["from"] == {"type": "Order", "id": "ord_1"}
    assert edge["rel"] == "customer"
    assert edge["to"] == {"type": "Person", "id": "per_1"}
    assert ISO_MS.match(edge["createdAt"])
    again = await store.relate(T, Ref("Order", "ord_1"), "customer", Ref("Person", "per_1"))
    assert again == edge
    assert len(await store.related(T, Ref("Order", "ord_1"), "customer", "out")) == 1


async def test_relate_to_a_missing_record_is_not_found(store: EntityStore) -> None:
    await store.create(T, "Order", {"id": "ord_1"})
    with pytest.raises(NotFound, match=r"^Person per_404 not found$"):
        await store.relate(T, Ref("Order", "ord_1"), "customer", Ref("Person", "per_404"))


async def test_related_follows_direction_and_relation_in_edge_creation_order(store: EntityStore) -> None:
    await _order_and_people(store)
    order = Ref("Order", "ord_1")
    await store.relate(T, order, "watcher", Ref("Person", "per_3"))
    await store.relate(T, order, "customer", Ref("Person", "per_1"))
    await store.relate(T, Ref("Person", "per_2"), "referred", order)

    out = await store.related(T, order, None, "out")
    assert [r["id"] for r in out] == ["per_3", "per_1"]
    assert out[0] == await store.get(T, "Person", "per_3")
    assert [r["id"] for r in await store.related(T, order, "customer", "out")] == ["per_1"]
    assert [r["id"] for r in await store.related(T, order, None, "in")] == ["per_2"]
    assert [r["id"] for r in await store.related(T, order, None, "both")] == ["per_3", "per_1", "per_2"]
    assert [r["id"] for r in await store.related(T, Ref("Person", "per_1"), "customer", "in")] == ["ord_1"]
    assert await store.related(T, order, "nothing", "both") == []


async def test_related_skips_records_that_were_deleted(store: EntityStore) -> None:
    await _order_and_people(store)
    order = Ref("Order", "ord_1")
    await store.relate(T, order, "customer", Ref("Person", "per_1"))
    await store.relate(T, order, "customer", Ref("Person", "per_2"))
    await store.delete(T, "Person", "per_1")
    assert [r["id"] for r in await store.related(T, order, "customer", "out")] == ["per_2"]
    await store.create(T, "Person", {"id": "per_1"})
    assert [r["id"] for r in await store.related(T, order, "customer", "out")] == ["per_2"]


# -- list: equality ----------------------------------------------------------------------------------


async def _orders(store: EntityStore) -> None:
    await seed(
        store,
        "Order",
        [
            {
                "id": "o1",
                "status": "pending",
                "total": 150,
                "paid": False,
                "tags": ["rush", "gift"],
                "customer": {"email": "a@example.com", "tier": 2},
            },
            {
                "id": "o2",
                "status": "paid",
                "total": 50,
                "paid": True,
                "tags": ["gift"],
                "customer": {"email": "b@example.com", "tier": 1},
            },
            {
                "id": "o3",
                "status": "pending",
                "total": 99.5,
                "paid": 1,
                "note": None,
                "customer": {"email": "c@example.com"},
            },
            {"id": "o4", "status": "cancelled", "total": "n/a", "tags": []},
        ],
    )


async def test_list_returns_every_record_of_the_type_in_creation_order(store: EntityStore) -> None:
    await _orders(store)
    await store.create(T, "Person", {"id": "p1"})
    assert await ids(store, "Order") == ["o1", "o2", "o3", "o4"]
    assert await ids(store, "Invoice") == []


async def test_list_where_plain_values_mean_equality(store: EntityStore) -> None:
    await _orders(store)
    assert await ids(store, "Order", where={"status": "pending"}) == ["o1", "o3"]
    assert await ids(store, "Order", where={"status": "pending", "total": 150}) == ["o1"]
    assert await ids(store, "Order", where={"total": 99.5}) == ["o3"]


async def test_list_where_null_matches_missing_or_null(store: EntityStore) -> None:
    await _orders(store)
    assert await ids(store, "Order", where={"note": None}) == ["o1", "o2", "o3", "o4"]
    assert await ids(store, "Order", where={"tags": None}) == ["o3"]
    assert await ids(store, "Order", where={"tags": {"ne": None}}) == ["o1", "o2", "o4"]


async def test_list_where_booleans_compare_as_booleans(store: EntityStore) -> None:
    await _orders(store)
    assert await ids(store, "Order", where={"paid": True}) == ["o2"]
    assert await ids(store, "Order", where={"paid": False}) == ["o1"]
    assert await ids(store, "Order", where={"paid": 1}) == ["o3"]


async def test_list_where_arrays_and_objects_compare_as_json(store: EntityStore) -> None:
    await _orders(store)
    assert await ids(store, "Order", where={"tags": ["gift"]}) == ["o2"]
    assert await ids(store, "Order", where={"tags": []}) == ["o4"]
    exact = {"customer": {"eq": {"tier": 1, "email": "b@example.com"}}}
    assert await ids(store, "Order", where=exact) == ["o2"]


async def test_list_where_nested_objects_and_dotted_paths_reach_nested_fields(store: EntityStore) -> None:
    await _orders(store)
    assert await ids(store, "Order", where={"customer.email": "b@example.com"}) == ["o2"]
    assert await ids(store, "Order", where={"customer": {"email": "b@example.com"}}) == ["o2"]
    assert await ids(store, "Order", where={"customer": {"tier": {"gte": 2}}}) == ["o1"]
    assert await ids(store, "Order", where={"tags.0": "rush"}) == ["o1"]


# -- list: operators ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"status": {"eq": "paid"}}, ["o2"]),
        ({"status": {"$eq": "paid"}}, ["o2"]),
        ({"status": {"ne": "pending"}}, ["o2", "o4"]),
        ({"total": {"gt": 99.5}}, ["o1"]),
        ({"total": {"$gte": 99.5}}, ["o1", "o3"]),
        ({"total": {"lt": 99.5}}, ["o2"]),
        ({"total": {"lte": 99.5}}, ["o2", "o3"]),
        ({"total": {"gte": 50, "lt": 150}}, ["o2", "o3"]),
        ({"status": {"in": ["paid", "cancelled"]}}, ["o2", "o4"]),
        ({"status": {"$nin": ["paid", "cancelled"]}}, ["o1", "o3"]),
        ({"status": {"in": []}}, []),
        ({"note": {"exists": True}}, []),
        ({"tags": {"exists": True}}, ["o1", "o2", "o4"]),
        ({"tags": {"exists": False}}, ["o3"]),
        ({"tags": {"contains": "gift"}}, ["o1", "o2"]),
        ({"customer.email": {"contains": "b@"}}, ["o2"]),
        ({"status": {"startsWith": "pen"}}, ["o1", "o3"]),
        ({"status": {"startsWith": "PEN"}}, []),
        ({"status": {"gt": "pending"}}, []),
        ({"status": {"lt": "paid"}}, ["o4"]),
        ({"$or": [{"status": "paid"}, {"total": 150}]}, ["o1", "o2"]),
        ({"$and": [{"status": "pending"}, {"total": {"lt": 100}}]}, ["o3"]),
    ],
)
async def test_list_where_operators_filter_in_the_store(
    store: EntityStore, where: dict[str, Any], expected: list[str]
) -> None:
    await _orders(store)
    assert await ids(store, "Order", where=where) == expected


async def test_list_where_numbers_never_match_strings(store: EntityStore) -> None:
    await _orders(store)
    assert "o4" not in await ids(store, "Order", where={"total": {"gt": 0}})
    assert await ids(store, "Order", where={"total": "n/a"}) == ["o4"]


async def test_list_where_contains_finds_numbers_in_arrays(store: EntityStore) -> None:
    await seed(store, "Lottery", [{"id": "l1", "picks": [1, 7, 42]}, {"id": "l2", "picks": [3]}])
    assert await ids(store, "Lottery", where={"picks": {"contains": 42}}) == ["l1"]


async def test_list_where_odd_field_names_are_just_field_names(store: EntityStore) -> None:
    odd = "x') OR 1=1; DROP TABLE entities; --"
    await seed(store, "Thing", [{"id": "t1", odd: "yes", "a b": 1}, {"id": "t2", odd: "no"}])
    assert await ids(store, "Thing", where={odd: "yes"}) == ["t1"]
    assert await ids(store, "Thing", where={"a b": 1}) == ["t1"]
    assert await ids(store, "Thing", sort={odd: "asc"}) == ["t2", "t1"]
    assert len(await store.list(T, "Thing", q())) == 2


# -- list: dates -------------------------------------------------------------------------------------


async def test_list_created_at_before_a_relative_time(store: EntityStore) -> None:
    now = now_ms()
    await seed(
        store,
        "Order",
        [
            {"id": "old", "status": "pending", "createdAt": now - 48 * HOUR},
            {"id": "new", "status": "pending"},
            {"id": "old_paid", "status": "paid", "createdAt": format_iso(now - 30 * HOUR)},
        ],
    )
    where = {"status": "pending", "createdAt": {"before": "24 hours ago"}}
    assert await ids(store, "Order", where=where) == ["old"]
    assert await ids(store, "Order", where={"createdAt": {"after": "24 hours ago"}}) == ["new"]
    assert await ids(store, "Order", where={"createdAt": {"lt": now - 24 * HOUR}}) == ["old", "old_paid"]
    since = format_iso(now - 36 * HOUR)
    assert await ids(store, "Order", where={"createdAt": {"gte": since}}) == ["old_paid", "new"]


async def test_list_date_fields_compare_as_instants_whatever_form_each_side_has(store: EntityStore) -> None:
    await seed(
        store,
        "Event",
        [
            {"id": "iso", "at": "2026-01-01T10:00:00.000Z"},
            {"id": "zoned", "at": "2026-01-01T13:00:00+02:00"},
            {"id": "ms", "at": 1767261600000},  # 2026-01-01T10:00:00Z
            {"id": "date", "at": "2026-01-02"},
        ],
    )
    later = {"at": {"after": "2026-01-01T10:30:00Z"}}
    assert sorted(await ids(store, "Event", where=later)) == ["date", "zoned"]
    assert sorted(await ids(store, "Event", where={"at": {"lt": 1767263400000}})) == ["iso", "ms"]
    assert sorted(await ids(store, "Event", where={"at": {"before": 1767263400000}})) == ["iso", "ms"]
    assert sorted(await ids(store, "Event", where={"at": "2026-01-01T10:00:00Z"})) == ["iso", "ms"]
    assert sorted(await ids(store, "Event", where={"at": {"gte": "2026-01-02"}})) == ["date"]


async def test_list_created_at_and_updated_at_accept_dates_in_any_form(store: EntityStore) -> None:
    await store.create(T, "Order", {"id": "o1", "createdAt": "2026-03-01T00:00:00Z"})
    await store.create(T, "Order", {"id": "o2", "createdAt": "2026-03-02T00:00:00Z"})
    assert await ids(store, "Order", where={"createdAt": "2026-03-01T00:00:00.000Z"}) == ["o1"]
    assert await ids(store, "Order", where={"createdAt": {"gt": 1772323200000}}) == ["o2"]
    assert await ids(store, "Order", where={"createdAt": {"startsWith": "2026-03-02"}}) == ["o2"]
    assert await ids(store, "Order", where={"updatedAt": {"after": "1 hour ago"}}) == ["o1", "o2"]


# -- list: metadata fields -----------------------------------------------------------------------------


async def test_list_where_id_and_version_use_the_metadata(store: EntityStore) -> None:
    await seed(store, "Order", [{"id": "o1"}, {"id": "o2"}, {"id": "o3"}])
    await store.update(T, "Order", "o2", {"x": 1})
    assert await ids(store, "Order", where={"id": "o2"}) == ["o2"]
    assert await ids(store, "Order", where={"id": {"in": ["o1", "o3", "o9"]}}) == ["o1", "o3"]
    assert await ids(store, "Order", where={"version": {"gt": 1}}) == ["o2"]
    assert await ids(store, "Order", where={"version": 1}) == ["o1", "o3"]


# -- list: sort, limit, offset, cursor -------------------------------------------------------------------


async def test_list_sorts_by_fields_in_order_with_creation_order_for_ties(store: EntityStore) -> None:
    await seed(
        store,
        "Order",
        [
            {"id": "a", "status": "paid", "total": 10},
            {"id": "b", "status": "pending", "total": 30},
            {"id": "c", "status": "paid", "total": 20},
            {"id": "d", "status": "pending", "total": 30},
        ],
    )
    assert await ids(store, "Order", sort={"total": "asc"}) == ["a", "c", "b", "d"]
    assert await ids(store, "Order", sort={"total": "desc"}) == ["b", "d", "c", "a"]
    assert await ids(store, "Order", sort={"status": "desc", "total": "asc"}) == ["b", "d", "a", "c"]
    assert await ids(store, "Order", sort={"createdAt": "desc"}, limit=2) == ["d", "c"]
    assert await ids(store, "Order", sort={"id": "desc"}) == ["d", "c", "b", "a"]


async def test_list_limit_defaults_to_100_and_offset_skips(store: EntityStore) -> None:
    await seed(store, "Item", [{"n": n} for n in range(120)])
    assert len(await store.list(T, "Item", q())) == 100
    page = await store.list(T, "Item", q(limit=5, offset=10))
    assert [r["n"] for r in page] == [10, 11, 12, 13, 14]


async def test_paging_through_250_records_by_offset_has_no_duplicates_or_gaps(store: EntityStore) -> None:
    await seed(store, "Item", [{"n": n, "group": n % 7} for n in range(250)])
    seen: list[int] = []
    offset = 0
    while page := await store.list(T, "Item", q(limit=60, offset=offset, sort={"group": "asc"})):
        seen.extend(r["n"] for r in page)
        offset += len(page)
    assert sorted(seen) == list(range(250)) and len(seen) == 250


@pytest.mark.parametrize(
    "sort",
    [
        None,
        {"group": "asc"},
        {"group": "desc"},
        {"maybe": "desc"},
        {"createdAt": "desc"},
        {"maybe": "asc", "group": "desc"},
    ],
)
async def test_paging_through_250_records_by_cursor_has_no_duplicates_or_gaps(
    store: EntityStore, sort: dict[str, str] | None
) -> None:
    rows = [{"n": n, "group": n % 7} | ({"maybe": n % 3} if n % 2 else {}) for n in range(250)]
    await seed(store, "Item", rows)
    expected = [r["n"] for r in await store.list(T, "Item", q(limit=1000, sort=sort))]
    seen: list[int] = []
    cursor = None
    while page := await store.list(T, "Item", q(limit=60, sort=sort, cursor=cursor)):
        seen.extend(r["n"] for r in page)
        cursor = page[-1]["id"]
    assert seen == expected and sorted(seen) == list(range(250))


async def test_cursor_paging_applies_the_where_filter(store: EntityStore) -> None:
    await seed(store, "Item", [{"n": n, "even": n % 2 == 0} for n in range(30)])
    first = await store.list(T, "Item", q(where={"even": True}, limit=10))
    rest = await store.list(T, "Item", q(where={"even": True}, limit=10, cursor=first[-1]["id"]))
    assert [r["n"] for r in first + rest] == list(range(0, 30, 2))


async def test_an_unknown_cursor_is_refused(store: EntityStore) -> None:
    await seed(store, "Item", [{"n": 1}])
    with pytest.raises(InputError, match="cursor"):
        await store.list(T, "Item", q(cursor="itm_nope"))
