"""The reference's script examples that need only db, $, user and console, run through the real tool.

Each script is the reference's text; where the reference writes a placeholder (`{ ... }`) it is filled in
with real data, and fixtures the example assumes (products with known ids) are created first.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.client import connect, text_of, value_of
from tests.support.seed import section
from tests.support.server import RunningServer

pytestmark = pytest.mark.anyio


async def run(server: RunningServer, script: str, *, key: str | None = "admin") -> Any:
    """The script's value (None for `undefined`); fails the test on an error result."""
    async with connect(server.url, key=server.admin_key if key == "admin" else key) as client:
        result = await client.call_tool("do", {"script": script})
    return None if not result.is_error and text_of(result) == "undefined" else value_of(result)


async def run_raw(server: RunningServer, script: str) -> Any:
    async with connect(server.url, key=server.admin_key) as client:
        return await client.call_tool("do", {"script": script})


@pytest.fixture
def tenant_key(server: RunningServer, request: pytest.FixtureRequest) -> str:
    """A fresh tenant per test, so every example starts from an empty store."""
    return server.new_key(request.node.name[:40], "--tenant", request.node.name[:60])


async def test_return_semantics_x_plus_y(server: RunningServer) -> None:
    assert await run(server, "const x = 10\nconst y = 32\nx + y") == 42
    assert await run(server, "const x = 10\nconst y = 20\nx + y // Returns 30") == 30


async def test_simple_query_lists_businesses(server: RunningServer, tenant_key: str) -> None:
    await run(server, "await db.create('Business', { name: 'Acme', industry: 'Technology' })", key=tenant_key)
    businesses = await run(server, "// List all businesses\nawait db.list('Business')", key=tenant_key)
    assert [b["name"] for b in businesses] == ["Acme"]
    assert await run(server, "await db.get('Order', 'ord_123')", key=tenant_key) is None


async def test_semantic_types_build_plain_typed_objects(server: RunningServer) -> None:
    order = await run(
        server,
        """const person = $.Person({ name: 'Alice' })
const org = $.Organization({ name: 'Acme Corp' })
const order = $.Order({ customer: person, seller: org })
order""",
    )
    assert order == {
        "$type": "Order",
        "customer": {"$type": "Person", "name": "Alice"},
        "seller": {"$type": "Organization", "name": "Acme Corp"},
    }


async def test_creating_records_with_a_relationship(server: RunningServer, tenant_key: str) -> None:
    order = await run(
        server,
        """// Create customer
const customer = await db.create('Person', {
name: 'Alice',
email: 'alice@example.com',
})
// Create order with relationship
const order = await db.create('Order', {
customer: customer,
items: [$.Product({ name: 'Widget', price: 29.99 })],
total: 29.99,
status: 'pending',
})
order""",
        key=tenant_key,
    )
    assert order["id"].startswith("ord_")
    assert order["customer"]["id"].startswith("per_")
    assert order["items"] == [{"$type": "Product", "name": "Widget", "price": 29.99}]
    assert order["status"] == "pending" and order["version"] == 1


async def test_filter_and_sort_returns_pending_orders_newest_first(server: RunningServer, tenant_key: str) -> None:
    await run(
        server,
        """for (const [i, status] of ['pending', 'paid', 'pending', 'pending'].entries()) {
  await db.create('Order', { n: i, status, total: 10 * (i + 1) })
}""",
        key=tenant_key,
    )
    orders = await run(
        server,
        """// Filter and sort
await db.list('Order', {
where: { status: 'pending' },
sort: { createdAt: 'desc' },
limit: 10,
})""",
        key=tenant_key,
    )
    assert [o["n"] for o in orders] == [3, 2, 0]
    mapped = await run(
        server, "const orders = await db.list('Order')\norders.map(o => ({ id: o.id, total: o.total }))", key=tenant_key
    )
    assert [m["total"] for m in mapped] == [10, 20, 30, 40]


async def test_data_analysis_returns_totals(server: RunningServer, tenant_key: str) -> None:
    await run(
        server, "await db.create('Order', { total: 5 })\nawait db.create('Order', { total: 7.5 })", key=tenant_key
    )
    result = await run(
        server,
        """// ✅ Script - process and return results
const orders = await db.list('Order')
const revenue = orders.reduce((sum, o) => sum + o.total, 0)
({ totalOrders: orders.length, revenue })""",
        key=tenant_key,
    )
    assert result == {"totalOrders": 2, "revenue": 12.5}


async def test_ad_hoc_bulk_update_returns_the_count(server: RunningServer, tenant_key: str) -> None:
    await run(server, "for (let i = 0; i < 3; i++) await db.create('Product', { category: 'old', i })", key=tenant_key)
    result = await run(
        server,
        """// ✅ Script - one-time bulk update
const products = await db.list('Product', { where: { category: 'old' } })
for (const product of products) {
await db.update('Product', product.id, { category: 'updated' })
}
;({ updated: products.length })""",
        key=tenant_key,
    )
    assert result == {"updated": 3}
    assert (
        await run(server, "(await db.list('Product', { where: { category: 'updated' } })).length", key=tenant_key) == 3
    )


async def test_user_context_logs_the_current_user(server: RunningServer) -> None:
    result = await run_raw(
        server,
        """// Current user
const currentUser = user.current()
if (currentUser) {
console.log('User ID:', currentUser.id)
console.log('Email:', currentUser.email)
}""",
    )
    assert not result.is_error
    assert text_of(result) == "undefined"
    assert result.structured_content is not None
    messages = [log["message"] for log in result.structured_content["logs"]]
    assert messages[0].startswith("User ID: key_")
    assert messages[1] == "Email: undefined"


async def test_permission_checks_guard_writes(server: RunningServer, tenant_key: str) -> None:
    result = await run(
        server,
        """// Check permissions before operations
if (user.can('create', 'Order')) {
await db.create('Order', { total: 1 })
} else {
throw new Error('Permission denied: cannot create orders')
}
const orderId = (await db.list('Order'))[0].id
if (user.can('delete', 'Order')) {
await db.delete('Order', orderId)
}
// Admin check
if (user.can('admin', '*')) {
console.log('admin')
}
await db.list('Order')""",
        key=tenant_key,
    )
    assert result == []


async def test_authenticated_mode_branches_on_the_current_user(server: RunningServer, tenant_key: str) -> None:
    script = """// Check authentication
const currentUser = user.current()
if (currentUser) {
// Full access
await db.create('Order', { total: 3 })
} else {
// Readonly only
await db.list('Business')
}
await db.list('Order')"""
    assert [o["total"] for o in await run(server, script, key=tenant_key)] == [3]


async def test_debugging_logs_variables(server: RunningServer, tenant_key: str) -> None:
    await run(server, "await db.create('Person', { id: 'per_123', name: 'Dana' })", key=tenant_key)
    result = await run_raw_with(
        server,
        tenant_key,
        """const customer = await db.get('Person', 'per_123')
console.log('Customer:', JSON.stringify(customer, null, 2))
const order = await db.create('Order', { customer, total: 1 })
console.log('Created order:', order)
order.customer.name""",
    )
    assert value_of(result) == "Dana"
    assert result.structured_content is not None
    logs = result.structured_content["logs"]
    assert logs[0]["message"].startswith('Customer: {\n  "id": "per_123"')
    assert logs[1]["message"].startswith("Created order: {")


async def test_error_handling_logs_and_rethrows(server: RunningServer, tenant_key: str) -> None:
    result = await run_raw_with(
        server,
        tenant_key,
        """try {
const result = await db.update('Order', 'ord_missing', { total: 1 })
console.log('Success:', result)
} catch (error) {
console.error('Failed:', error.message)
throw error
}""",
    )
    assert result.is_error
    assert text_of(result).startswith("Error: Order ord_missing not found\n    at line 2:")
    assert result.structured_content is not None
    assert result.structured_content["logs"][0]["message"] == "Failed: Order ord_missing not found"


TRANSFER = """// Transaction pattern with rollback
async function transferInventory(fromProductId: string, toProductId: string, quantity: number) {
const operations = []
try {
// Step 1: Deduct from source
const fromProduct = await db.get('Product', fromProductId)
if (fromProduct.stock < quantity) {
throw new Error('Insufficient stock')
}
const updatedFrom = await db.update('Product', fromProductId, {
stock: fromProduct.stock - quantity,
})
operations.push({ type: 'update', id: fromProductId, rollback: { stock: fromProduct.stock } })
// Step 2: Add to destination
const toProduct = await db.get('Product', toProductId)
const updatedTo = await db.update('Product', toProductId, {
stock: toProduct.stock + quantity,
})
operations.push({ type: 'update', id: toProductId, rollback: { stock: toProduct.stock } })
// Step 3: Create transfer record
const transfer = await db.create('InventoryTransfer', {
fromProductId,
toProductId,
quantity,
timestamp: new Date(),
})
operations.push({ type: 'create', id: transfer.id })
return { success: true, transferId: transfer.id }
} catch (error) {
console.error('Transfer failed, rolling back:', error.message)
// Rollback in reverse order
for (const op of operations.reverse()) {
try {
if (op.type === 'update') {
await db.update('Product', op.id, op.rollback)
} else if (op.type === 'create') {
await db.delete('InventoryTransfer', op.id)
}
} catch (rollbackError) {
console.error('Rollback failed:', rollbackError.message)
}
}
throw error
}
}
// Execute with rollback support
await transferInventory('prod_123', 'prod_456', QUANTITY)"""


async def test_transaction_pattern_transfers_and_rolls_back(server: RunningServer, tenant_key: str) -> None:
    await run(
        server,
        "await db.create('Product', { id: 'prod_123', stock: 25 })\n"
        "await db.create('Product', { id: 'prod_456', stock: 5 })",
        key=tenant_key,
    )
    moved = await run(server, TRANSFER.replace("QUANTITY", "10"), key=tenant_key)
    assert moved["success"] is True and moved["transferId"].startswith("inv_")
    refused = await run_raw_with(server, tenant_key, TRANSFER.replace("QUANTITY", "100"))
    assert refused.is_error
    assert text_of(refused) == "Error: Insufficient stock\n    at line 8:7"
    stocks = await run(server, "(await db.list('Product')).map(p => p.stock)", key=tenant_key)
    assert stocks == [15, 15]


async def test_batch_processing_reports_progress_and_totals(server: RunningServer, tenant_key: str) -> None:
    await run(
        server,
        "await db.create('Product', { id: 'prod_1', price: 1 })\n"
        "await db.create('Product', { id: 'prod_2', price: 2 })",
        key=tenant_key,
    )
    result = await run_raw_with(
        server,
        tenant_key,
        """async function batchUpdateProducts(updates: Array<{ id: string; data: any }>) {
const batchSize = 10
const results = []
for (let i = 0; i < updates.length; i += batchSize) {
const batch = updates.slice(i, i + batchSize)
console.log(`Processing batch ${i / batchSize + 1} of ${Math.ceil(updates.length / batchSize)}`)
const batchResults = await Promise.allSettled(batch.map((update) => db.update('Product', update.id, update.data)))
batchResults.forEach((result, idx) => {
if (result.status === 'fulfilled') {
results.push({ id: batch[idx].id, success: true })
} else {
results.push({ id: batch[idx].id, success: false, error: result.reason.message })
}
})
// Progress notification
if ((i + batchSize) % 100 === 0) {
await send($.Job.progress, {
type: 'product_update',
processed: Math.min(i + batchSize, updates.length),
total: updates.length,
})
}
// Rate limiting
await new Promise((resolve) => setTimeout(resolve, 100))
}
return {
total: updates.length,
successful: results.filter((r) => r.success).length,
failed: results.filter((r) => !r.success).length,
errors: results.filter((r) => !r.success).map((r) => ({ id: r.id, error: r.error })),
}
}
// Execute batch operation
const updates = [
{ id: 'prod_1', data: { price: 29.99 } },
{ id: 'prod_2', data: { price: 39.99 } },
{ id: 'prod_3', data: { price: 49.99 } },
]
await batchUpdateProducts(updates)""",
    )
    assert value_of(result) == {
        "total": 3,
        "successful": 2,
        "failed": 1,
        "errors": [{"id": "prod_3", "error": "Product prod_3 not found"}],
    }
    assert result.structured_content is not None
    assert result.structured_content["logs"][0]["message"] == "Processing batch 1 of 1"


async def test_parallel_dashboard_loads_everything_at_once(server: RunningServer, tenant_key: str) -> None:
    await run(
        server,
        """await db.create('Order', { status: 'paid', total: 100 })
await db.create('Order', { status: 'paid', total: 50 })
await db.create('Order', { status: 'pending', total: 20 })
await db.create('Person', { name: 'A' })
await db.create('Product', { name: 'low', stock: 3 })
await db.create('Product', { name: 'high', stock: 300 })""",
        key=tenant_key,
    )
    dashboard = await run(
        server,
        """// Parallel data fetching
async function loadDashboardData() {
const [orders, customers, products, revenue] = await Promise.all([
db.list('Order', { limit: 100, sort: { createdAt: 'desc' } }),
db.list('Person', { limit: 50 }),
db.list('Product', { where: { stock: { lt: 10 } } }),
calculateRevenue(),
])
return {
recentOrders: orders,
topCustomers: customers,
lowStockProducts: products,
revenueMetrics: revenue,
}
}
async function calculateRevenue() {
const orders = await db.list('Order', {
where: { status: 'paid' },
})
return {
total: orders.reduce((sum, o) => sum + o.total, 0),
count: orders.length,
average: orders.length > 0 ? orders.reduce((sum, o) => sum + o.total, 0) / orders.length : 0,
}
}
// Execute with parallel operations
const dashboard = await loadDashboardData()
dashboard""",
        key=tenant_key,
    )
    assert [o["total"] for o in dashboard["recentOrders"]] == [20, 50, 100]
    assert [p["name"] for p in dashboard["lowStockProducts"]] == ["low"]
    assert dashboard["revenueMetrics"] == {"total": 150, "count": 2, "average": 75}


async def test_parallel_execution_and_limits_from_best_practices(server: RunningServer, tenant_key: str) -> None:
    await run(
        server,
        "for (let i = 0; i < 12; i++) await db.create('Order', { i, status: i % 2 ? 'active' : 'done' })",
        key=tenant_key,
    )
    result = await run(
        server,
        """const [orders, customers] = await Promise.all([db.list('Order'), db.list('Customer')])
// Fetch only what you need
const recentOrders = await db.list('Order', {
limit: 10,
sort: { createdAt: 'desc' },
})
// Filter at database level
const activeOrders = await db.list('Order', {
where: { status: 'active' },
})
;({ all: orders.length, customers: customers.length, recent: recentOrders.map(o => o.i), active: activeOrders.length })""",
        key=tenant_key,
    )
    assert result == {"all": 12, "customers": 0, "recent": [11, 10, 9, 8, 7, 6, 5, 4, 3, 2], "active": 6}


async def run_raw_with(server: RunningServer, key: str, script: str) -> Any:
    async with connect(server.url, key=key) as client:
        return await client.call_tool("do", {"script": script})


async def test_script_characteristics_create_records_and_send_the_confirmation(
    server: RunningServer, tenant_key: str
) -> None:
    order = await run(server, section("// Complex multi-step operation", until="Key Points:"), key=tenant_key)
    assert order["id"].startswith("ord_") and order["total"] == 29.99
    assert order["customer"]["email"] == "team@example.com"


async def test_scenario_1_order_processing_runs_its_handlers_when_the_script_sends(
    server: RunningServer, tenant_key: str
) -> None:
    await run(
        server,
        """await db.create('Product', { id: 'prod_widget_001', name: 'Widget', price: 10, stock: 11, weight: 1 })
await db.create('Product', { id: 'prod_gadget_002', name: 'Gadget', price: 25, stock: 50, weight: 2 })""",
        key=tenant_key,
    )
    result = await run_raw_with(
        server,
        tenant_key,
        section("// Module: Set up event handlers for order lifecycle", until="Scenario 2: Content Management"),
    )
    assert not result.is_error, text_of(result)
    summary = value_of(result)
    assert summary["customer"] == "Bob Smith" and summary["total"] == 45 and summary["items"] == 2
    assert summary["status"] == "pending" and summary["orderId"].startswith("ord_")
    assert result.structured_content is not None
    assert "nothing was persisted" in result.structured_content["warnings"][0]
    assert result.structured_content["logs"][0]["message"] == f"New order created: {summary['orderId']}"
    stock = await run(server, "(await db.list('Product')).map(p => [p.id, p.stock])", key=tenant_key)
    assert stock == [["prod_widget_001", 9], ["prod_gadget_002", 49]]
