"""The reference's module and combined-execution examples, run the same way on both deployments: the
embedded default (one `mcpdo serve` process) and the AWS wiring (three functions over moto). What a user
writes and what it does must not depend on where it runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.deployments import Deployment, aws_deployment, local_deployment
from tests.support.seed import ANALYTICS, ECOMMERCE, ORDER_FULFILLMENT, section
from tests.support.sync import call_tool, run_script


@pytest.fixture(scope="module", params=["local", "aws"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if request.param == "local":
        with local_deployment(tmp_path_factory.mktemp("both")) as local:
            yield local
    else:
        request.getfixturevalue("moto_endpoint")
        with aws_deployment() as aws:
            yield aws


def do(deployment: Deployment, **arguments: str) -> Any:
    is_error, text = call_tool(deployment, deployment.admin_key, arguments)
    assert not is_error, text
    return None if text == "undefined" else json.loads(text)


def get(deployment: Deployment, kind: str, record_id: str) -> Any:
    return run_script(deployment, f"await db.get('{kind}', '{record_id}')")


def test_order_fulfillment_registers_and_its_handlers_fire(deployment: Deployment) -> None:
    summary = do(deployment, module=ORDER_FULFILLMENT)
    assert [h["event"] for h in summary["handlers"]] == ["Order.created", "Payment.completed"]
    assert [s["cron"] for s in summary["schedules"]] == ["0 */6 * * *"]
    order = run_script(
        deployment,
        """const order = await db.create('Order', {
  customer: $.Person({ name: 'Ann', email: 'ann@example.com' }), status: 'pending', total: 10 })
await send($.Order.created, order)
order""",
    )
    mail = deployment.settle(lambda: [m for m in deployment.mail() if m["to"] == "ann@example.com"])
    assert mail[0]["subject"] == "Order Confirmation"
    run_script(deployment, f"await send($.Payment.completed, {{ orderId: '{order['id']}' }})")
    paid = deployment.settle(lambda: (get(deployment, "Order", order["id"]) or {}).get("status") == "paid")
    assert paid


def test_ecommerce_handlers_registered_by_an_exported_setup_function_fire(deployment: Deployment) -> None:
    summary = do(deployment, module=ECOMMERCE)
    assert summary["exports"] == ["setupEcommerceHandlers"]
    ids = run_script(
        deployment,
        """const customer = await db.create('Person', { name: 'Bo', email: 'bo@example.com' })
const order = await db.create('Order', { orderNumber: 'A-1', customerId: customer.id, total: 650, status: 'new' })
await send($.Order.created, order)
await send($.Order.paid, { orderId: order.id, amount: order.total })
;({ order: order.id })""",
    )
    mail = deployment.settle(lambda: [m for m in deployment.mail() if m["to"] == "bo@example.com"])
    assert mail[0]["subject"] == "Order Confirmation #A-1" and "Total: $650" in mail[0]["body"]
    order = deployment.settle(
        lambda: (record := get(deployment, "Order", ids["order"])) and record["status"] == "processing" and record
    )
    assert order["processingStartedAt"].endswith("Z")


def test_analytics_schedules_fire_their_handlers(deployment: Deployment) -> None:
    summary = do(deployment, module=ANALYTICS)
    assert [s["cron"] for s in summary["schedules"]] == ["0 9 * * *", "0 8 * * MON", "0 * * * *"]
    stale = run_script(
        deployment,
        "await db.create('Order', { status: 'pending', total: 5, createdAt: new Date(Date.now() - 2 * 86400000) })",
    )
    deployment.fire(summary["id"], "0 * * * *")
    deployment.fire(summary["id"], "0 9 * * *")
    cancelled = deployment.settle(
        lambda: (record := get(deployment, "Order", stale["id"])) and record["status"] == "cancelled" and record
    )
    assert cancelled["cancelReason"] == "stale"
    report = deployment.settle(lambda: [m for m in deployment.mail() if m["subject"].startswith("Daily Sales Report")])
    assert '"totalOrders"' in report[0]["body"]


def test_combined_execution_effects_are_visible_on_the_next_line(deployment: Deployment) -> None:
    counted = run_script(
        deployment,
        """on($.Counter.bumped, async (data) => {
  await db.update('Counter', data.id, { n: { $inc: 1 } })
})
const counter = await db.create('Counter', { n: 0 })
await send($.Counter.bumped, { id: counter.id })
await send($.Counter.bumped, { id: counter.id })
;(await db.get('Counter', counter.id)).n""",
    )
    assert counted == 2


def test_the_references_combined_execution_example_runs_and_says_nothing_was_persisted(
    deployment: Deployment,
) -> None:
    script = section("// Register persistent event handlers", until="Use Case:")
    is_error, text = call_tool(deployment, deployment.admin_key, {"script": script})
    assert not is_error, text
    order = json.loads(text)
    assert order["total"] == 29.99 and order["customer"] == {"$type": "Person", "name": "Alice"}


def test_a_module_and_a_script_in_one_call_share_the_modules_exports(deployment: Deployment) -> None:
    value = do(
        deployment,
        module="---\n$id: /lib/pricing\n---\nexport function withTax(amount: number) {\n"
        "  return Math.round(amount * 1.2 * 100) / 100\n}\n",
        script="withTax(10)",
    )
    assert value == 12
    assert run_script(deployment, "import { withTax } from '/lib/pricing'\nwithTax(100)") == 120
