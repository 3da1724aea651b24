"""Every code block of the reference, from its fenced copy `tests/seed/examples.md`, against a real server.

The copy cannot drift: each block, whitespace removed, is the reference's text at its place (in order, from
the start of a line to where the text copy glued the block's last line to the prose after it), and every
line of the reference that looks like code is inside a block.

Every runnable block (script, module, script+module, call, docs) runs through `do` on one real `mcpdo serve`.
Each block that writes records or sends events has a tenant of its own (a key per block), so the records
and persistent handlers of one example never meet another's. The model provider is a fake OpenAI-compatible
server and the external web services one fake web service, both on loopback (as in `conftest.py`): the
reference's hosts (`https://analytics.acme.com`, ...) become paths of the fake
(`<fake>/analytics.acme.com/...`), and `api.proxy`'s `stripe` and `shippo` point there through
`MCPDO_SERVICES`, with their secrets in `MCPDO_SECRETS_FILE`. The records an example reads but never creates
(`ord_123`, `prod_123`, ...) are made first with those ids (`db.create` keeps an `id` given in the data), see
SEEDS; nothing of a block is changed when it runs but its e-mail markers and hosts.

A block either succeeds (no `isError`; a module answers with its registration summary) or is listed in
KNOWN_FAILURES with what the product does; the test then asserts that it still fails, so a fix shows up.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.seed.examples_support import (
    ADDRESS,
    KINDS,
    RUNNABLE,
    Example,
    by_id,
    call_arguments,
    doc_requests,
    examples,
    module_document,
    place_all,
    reference_text,
    runnable_text,
)
from tests.support.fake_models import FakeModelServer, fake_model_server
from tests.support.fake_web import FakeWeb, fake_web
from tests.support.seed import ai_settings
from tests.support.server import RunningServer, start_server, stop_server
from tests.support.sync import tool_result

# How the blocks were counted: reading the reference's copy from top to bottom, a code block is where code
# starts on the line after a line of prose and runs to where the copy glued its last line to the next prose
# (`})Module Parameter Features`, `orderKey Points:`, `// GET onlyBlocked:`); a closing fence is the only
# place the copy glues code to prose. There are 82 such blocks: 6 JSON shapes, 1 type signature block, 3 text
# diagrams and 72 blocks of TypeScript or MDXLD. `test_every_block_is_placed_in_the_reference` checks that
# each block ends at such a glue point and `test_no_code_line_of_the_reference_is_left_out` that none was
# missed.
REFERENCE_BLOCKS = 82

# Blocks that fail because of a product bug: id -> what the product does instead. Each is run and must still
# fail; when the bug is fixed the test says so, and the entry goes.
KNOWN_FAILURES: dict[str, str] = {}

# The external hosts the runnable blocks fetch from, each mapped to a path prefix of the fake web service.
EXTERNAL_HOSTS = ("api.example.com", "api.external.com", "analytics.acme.com", "charts.acme.com")
STRIPE_SECRET = "sk_test_reference_examples"
SHIPPO_SECRET = "shippo_test_reference_examples"

WEB_ROUTES: dict[str, Any] = {
    "/api.example.com/data": [{"id": "item_1", "name": "Example item"}],
    "/api.external.com/data": {"status": "ok"},
    "/analytics.acme.com/api/revenue": {"total": 1200, "growth": 0.12, "forecast": 1300},
    "/analytics.acme.com/api/traffic": {"visitors": 400, "pageViews": 1800},
    "/charts.acme.com/api/generate": {"chart": "https://charts.example/c1.png"},
    "/api.stripe.com/v1/customers/cus_123": {"id": "cus_123", "object": "customer"},
    "/api.goshippo.com/shipments": {
        "tracking_number": "1Z999AA10123456784",
        "tracking_url": "https://tracking.example/1Z999AA10123456784",
        "carrier": "usps",
    },
}

# Records each example reads without creating them, made first in its tenant.
SEEDS: dict[str, str] = {
    "simple-queries": """await db.create('Business', { name: 'Acme', industry: 'Technology' })
await db.create('Order', { id: 'ord_123', status: 'pending', total: 10 })""",
    "ai-powered-workflows": """await db.create('Product', { name: 'Bottle' })
await db.create('Product', { name: 'Mug' })""",
    "multi-step-operations": """await db.create('Business', { name: 'Rocket', industry: 'Technology', growthRate: 0.9 })
await db.create('Business', { name: 'Slow', industry: 'Technology', growthRate: 0.1 })""",
    "module-composition": """await db.create('Product', { id: 'prod_123', name: 'Widget', price: 10 })
await db.create('Product', { id: 'prod_456', name: 'Gadget', price: 5 })""",
    "multi-step-script-workflows": """await db.create('Person', { id: 'per_123', name: 'Dana', email: 'dana@example.com',
  address: { street1: '1 Main St', city: 'Springfield', state: 'IL', zip: '62701' } })
await db.create('Product', { id: 'prod_123', name: 'Widget', stock: 5 })
await db.create('Order', { id: 'ord_123', status: 'paid', customerId: 'per_123',
  items: [{ productId: 'prod_123', quantity: 2, weight: 1 }] })""",
    "transaction-patterns": """await db.create('Product', { id: 'prod_123', stock: 25 })
await db.create('Product', { id: 'prod_456', stock: 5 })""",
    "batch-processing-patterns": """await db.create('Product', { id: 'prod_1', price: 1 })
await db.create('Product', { id: 'prod_2', price: 2 })""",
    "parallel-execution-patterns": """await db.create('Order', { status: 'paid', total: 100 })
await db.create('Order', { status: 'pending', total: 20 })
await db.create('Product', { name: 'low', stock: 3 })""",
    "scenario-1-order-processing": """await db.create('Product', { id: 'prod_widget_001', name: 'Widget', price: 10, stock: 11, weight: 1 })
await db.create('Product', { id: 'prod_gadget_002', name: 'Gadget', price: 25, stock: 50, weight: 2 })""",
    "scenario-3-analytics-pipeline": """await db.create('Product', { id: 'prod_1', name: 'Mug', price: 12, stock: 4 })
await db.create('Person', { id: 'per_1', name: 'Ann' })
await db.create('Order', { total: 24, status: 'paid', customerId: 'per_1', items: [{ productId: 'prod_1', quantity: 2 }] })""",
    "script-for-queries": "await db.create('Order', { status: 'pending', total: 5 })",
    "script-for-data-analysis": "await db.create('Order', { total: 5 })\nawait db.create('Order', { total: 7.5 })",
    "script-for-ad-hoc-tasks": """await db.create('Product', { category: 'old' })
await db.create('Product', { category: 'old' })""",
    "anti-script-for-recurring-task": "await db.create('Order', { status: 'pending', total: 5 })",
}
# Modules an example imports, registered (as their blocks) in its tenant first.
IMPORTS: dict[str, tuple[str, ...]] = {
    "module-composition": ("export-functions", "export-workflows", "export-event-handlers"),
}

# What the model answers, by schema name, where the block reads fields a schema-less type does not have.
CANNED: dict[str, dict[str, dict[str, Any]]] = {
    "scenario-3-analytics-pipeline": {
        "BusinessInsights": {
            "summary": "A strong month.",
            "analysis": "Revenue grew 12%.",
            "recommendations": ["Restock mugs", "Email dormant customers"],
        }
    },
}

# Each module's registration: handlers' events, schedules' crons, exports.
MODULES: dict[str, tuple[list[str], list[str], list[str]]] = {
    "module-characteristics": (["Order.created"], ["0 9 * * *"], []),
    "mdxld-module-structure": (["Order.created", "Payment.completed"], ["0 */6 * * *"], ["config"]),
    "example-creating-a-module": (["Ticket.created"], [], []),
    "combined-execution": (["Order.created", "Payment.succeeded"], [], []),
    "on-event-handlers": (["Order.created", "Payment.succeeded"], [], []),
    "every-scheduled-workflows": ([], ["0 * * * *", "0 9 * * *"], []),
    "event-driven-architecture": (["Order.created", "Payment.succeeded"], [], []),
    "scheduled-tasks": ([], ["0 */6 * * *", "0 9 * * *"], []),
    "export-functions": ([], [], ["processOrder", "calculateOrderTotal"]),
    "export-workflows": ([], [], ["onboardCustomer", "syncProductCatalog"]),
    "export-event-handlers": (
        ["Order.created", "Order.paid", "Order.shipped", "Product.lowStock", "Customer.inactive"],
        [],
        ["setupEcommerceHandlers"],
    ),
    "export-scheduled-tasks": ([], ["0 9 * * *", "0 8 * * MON", "0 * * * *"], ["setupAnalyticsTasks"]),
    "scenario-1-order-processing": (["Order.created", "Payment.succeeded", "Fulfillment.start"], [], []),
    "scenario-2-content-management": (["Article.submitted", "Article.approved"], ["0 2 * * *"], []),
    "scenario-4-customer-support": (["Ticket.created", "Ticket.responded"], ["0 18 * * *"], []),
    "module-for-scheduled-tasks": ([], ["0 9 * * *"], []),
    "module-for-workflow-orchestration": (["Payment.succeeded", "Fulfillment.start"], [], []),
    "module-for-background-jobs": (["Job.export"], [], []),
}


# -- the deployment ---------------------------------------------------------------------------------------


@dataclass
class Deployment:
    server: RunningServer
    models: FakeModelServer
    web: FakeWeb
    hosts: dict[str, str]
    keys: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """One `do` result."""

    is_error: bool
    text: str
    structured: dict[str, Any]

    @property
    def value(self) -> Any:
        assert not self.is_error, self.text
        return None if self.text == "undefined" else json.loads(self.text)

    @property
    def logs(self) -> list[str]:
        return [entry["message"] for entry in self.structured.get("logs", [])]


def call_do(server: RunningServer, key: str | None, arguments: dict[str, str]) -> Outcome:
    result = tool_result(server, key, arguments)
    return Outcome(
        bool(result.get("isError")), str(result["content"][0]["text"]), result.get("structuredContent") or {}
    )


def runnable_ids() -> list[str]:
    return [e.id for e in examples() if e.kind in RUNNABLE]


# Blocks that only register modules (with `$id`s of their own) send no events and write no records: they share
# one tenant. Documentation requests read nothing: the admin key's. Every other block has a tenant of its own.
SHARED_TENANT = "modules"
ADMIN = "admin"
SKIPPED_TENANT = "skipped-blocks"


def tenant_of(example: Example) -> str:
    if example.kind in ("module", "call"):
        return SHARED_TENANT
    return ADMIN if example.kind == "docs" else example.id


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    state = tmp_path_factory.mktemp("examples")
    with fake_model_server() as models, fake_web() as web:
        web.routes.update({path: (200, answer) for path, answer in WEB_ROUTES.items()})
        services = state / "services.yaml"
        services.write_text(
            f'stripe: {{ baseUrl: "{web.url}/api.stripe.com" }}\nshippo: {{ baseUrl: "{web.url}/api.goshippo.com" }}\n'
        )
        secrets = state / "secrets.json"
        secrets.write_text(json.dumps({"STRIPE_SECRET_KEY": STRIPE_SECRET, "SHIPPO_API_KEY": SHIPPO_SECRET}))
        running = start_server(
            state / "data",
            **ai_settings(models, web),
            MCPDO_SERVICES=str(services),
            MCPDO_SECRETS_FILE=str(secrets),
        )
        try:
            hosts = {host: f"{web.url}/{host}" for host in EXTERNAL_HOSTS}
            ready = Deployment(running, models, web, hosts)
            # The CLI makes the keys, a few at a time (each is a process of its own).
            ids = sorted({tenant_of(by_id(i)) for i in runnable_ids()} - {ADMIN} | {SKIPPED_TENANT})
            with ThreadPoolExecutor(max_workers=4) as pool:
                made = pool.map(lambda i: running.new_key(f"ex-{i}"[:60], "--tenant", f"ex-{i}"[:60]), ids)
                ready.keys.update(zip(ids, made, strict=True))
            ready.keys[ADMIN] = running.admin_key
            yield ready
        finally:
            stop_server(running)


# -- the copy and the count -------------------------------------------------------------------------------


def test_every_block_has_an_allowed_kind_and_the_count_is_the_references() -> None:
    items = examples()
    assert len(items) == REFERENCE_BLOCKS
    assert len({e.id for e in items}) == len(items), "ids must be unique"
    for example in items:
        assert example.kind in KINDS, f"{example.id}: unknown kind {example.kind!r}"
        assert all(part.kind == example.kind for part in example.parts), example.id
        if example.kind == "script+module":
            assert [p.id for p in example.parts] == [f"{example.id}/module", f"{example.id}/script"], example.id
        else:
            assert [p.id for p in example.parts] == [example.id], example.id
        if example.kind == "skip":
            assert example.attrs.get("reason", "").strip(), f"{example.id}: a skip needs a reason"
        else:
            assert "reason" not in example.attrs, example.id
        if example.kind == "json":
            json.loads(example.text)
        if example.kind == "call":
            assert call_arguments(example.text), example.id
        if example.kind == "docs":
            assert doc_requests(example.text), example.id
    assert set(KNOWN_FAILURES) <= set(runnable_ids())
    assert set(SEEDS) | set(IMPORTS) | set(CANNED) <= set(runnable_ids())
    assert {m for needed in IMPORTS.values() for m in needed} <= {e.id for e in items if e.kind == "module"}
    kinds = [e.kind for e in items]
    assert (kinds.count("json"), kinds.count("signature")) == (6, 1)


def test_every_block_is_placed_in_the_reference() -> None:
    reference = reference_text()
    placements = place_all(examples(), reference)
    for example_id, placed in placements.items():
        line_start = reference.rfind("\n", 0, placed.start) + 1
        assert reference[line_start : placed.start].strip() == "", f"{example_id} starts inside a line"
        # The block's last line runs straight into the prose after it: where the closing fence was.
        assert not reference[placed.end].isspace(), f"{example_id} does not end where a fence closed"


# Lines that start like code or a diagram; outside a block the reference has only prose, lists and tables.
CODE_LINE = re.compile(
    r"^(await |const |let |if \(|for \(|on\(|every\(|//|import |export |function |async function |[{}\[\]();]"
    r"|[├└│↓]|Parse →|AST )"
)


def test_no_code_line_of_the_reference_is_left_out() -> None:
    reference = reference_text()
    placements = list(place_all(examples(), reference).values())
    covered = [False] * len(reference)
    for placed in placements:
        covered[placed.start : placed.end] = [True] * (placed.end - placed.start)
    offset = 0
    left_out = []
    for number, line in enumerate(reference.split("\n"), start=1):
        inside = any(covered[offset : offset + len(line)])
        if not inside and CODE_LINE.match(line):
            left_out.append(f"{number}: {line}")
        offset += len(line) + 1
    assert left_out == []


# -- running them -----------------------------------------------------------------------------------------


def seed(deployment: Deployment, example_id: str, key: str) -> None:
    if example_id in SEEDS:
        outcome = call_do(deployment.server, key, {"script": SEEDS[example_id]})
        assert not outcome.is_error, outcome.text
    for module_id in IMPORTS.get(example_id, ()):
        block = by_id(module_id).parts[0]
        outcome = call_do(deployment.server, key, {"module": runnable_text(module_document(block, module_id), {})})
        assert not outcome.is_error, outcome.text


def run(deployment: Deployment, example: Example, key: str | None) -> list[Outcome]:
    """The `do` calls the example makes, in order."""
    hosts = deployment.hosts
    if example.kind == "script":
        return [call_do(deployment.server, key, {"script": runnable_text(example.text, hosts)})]
    if example.kind == "module":
        document = module_document(example.parts[0], example.id)
        return [call_do(deployment.server, key, {"module": runnable_text(document, hosts)})]
    if example.kind == "script+module":
        arguments = {
            "module": runnable_text(module_document(example.part("module"), example.id), hosts),
            "script": runnable_text(example.part("script").text, hosts),
        }
        return [call_do(deployment.server, key, arguments)]
    if example.kind == "call":
        arguments = {name: runnable_text(text, hosts) for name, text in call_arguments(example.text).items()}
        return [call_do(deployment.server, key, arguments)]
    assert example.kind == "docs"
    return [call_do(deployment.server, key, {"script": name}) for name in doc_requests(example.text)]


def registration(outcome: Outcome) -> dict[str, Any]:
    """The registration summary of a module call (with a script, it is in the structured content)."""
    summary = outcome.structured.get("module") or outcome.value
    assert isinstance(summary, dict) and {"id", "version", "handlers", "schedules", "exports"} <= set(summary)
    return summary


def check_registration(example_id: str, summary: dict[str, Any]) -> None:
    events, crons, exported = MODULES[example_id]
    assert [h["event"] for h in summary["handlers"]] == events
    assert [s["cron"] for s in summary["schedules"]] == crons
    assert sorted(summary["exports"]) == sorted(exported)


Check = Callable[[Deployment, str, list[Outcome]], None]
CHECKS: dict[str, Check] = {}


def check(example_id: str) -> Callable[[Check], Check]:
    def register(function: Check) -> Check:
        CHECKS[example_id] = function
        return function

    return register


def value(outcomes: list[Outcome]) -> Any:
    return outcomes[-1].value


def poll(deployment: Deployment, key: str, script: str, done: Callable[[Any], bool], timeout: float = 15) -> Any:
    """A script's value once `done` accepts it (handlers run in the server's worker, a moment later)."""
    deadline = time.monotonic() + timeout
    while True:
        found = call_do(deployment.server, key, {"script": script}).value
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@check("code-mode-typescript")
def _code_mode(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    order = value(outcomes)
    assert order["id"].startswith("ord_") and order["customer"] == {"$type": "Person", "name": "Alice"}


@check("script-characteristics")
def _script_characteristics(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    order = value(outcomes)
    assert order["total"] == 29.99 and order["customer"]["email"] == ADDRESS


@check("example-creating-a-module")
def _creating_a_module(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert registration(outcomes[0])["id"] == "https://platform.do/agents/customer-support"


@check("combined-execution")
def _combined(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert value(outcomes)["items"] == [{"$type": "Product", "name": "Widget", "price": 29.99}]


@check("documentation-requests")
def _docs(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    names = doc_requests(by_id("documentation-requests").text)
    assert names == ["$.md", "db.md", "ai.md"]
    for name, outcome in zip(names, outcomes, strict=True):
        assert not outcome.is_error and outcome.text.startswith(f"# `{name.removesuffix('.md')}`"), outcome.text


@check("ai-operations")
def _ai_operations(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert value(outcomes) is None
    assert outcomes[0].structured["usage"]["modelCalls"] >= 2


@check("api-operations")
def _api_operations(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    received = {r["path"]: r for r in deployment.web.received}
    assert received["/api.example.com/data"]["method"] == "GET"
    stripe = received["/api.stripe.com/v1/customers/cus_123"]
    assert stripe["headers"]["authorization"] == f"Bearer {STRIPE_SECRET}"


@check("send-event-publishing")
def _send(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert isinstance(value(outcomes)["id"], str)


@check("simple-queries")
def _simple_queries(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert [o["id"] for o in value(outcomes)] == ["ord_123"]


@check("creating-records")
def _creating_records(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    order = value(outcomes)
    assert order["customer"]["email"] == ADDRESS and order["status"] == "pending"


@check("ai-powered-workflows")
def _ai_workflows(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    results = value(outcomes)
    assert len(results) == 2 and all(r["updated"] for r in results)
    assert {r["model"] for r in deployment.models.requests} == {"fake-gpt"}


@check("multi-step-operations")
def _multi_step(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    insights = value(outcomes)
    assert len(insights) == 1 and isinstance(insights[0]["headline"], str)


@check("readonly-allowed")
def _readonly_allowed(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert value(outcomes) == WEB_ROUTES["/api.example.com/data"]


@check("bp-use-semantic-types")
def _semantic_types(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert value(outcomes)["customer_name"] == "Alice"


@check("module-composition")
def _composition(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert "Order total: 25" in outcomes[0].logs
    people = call_do(deployment.server, key, {"script": "await db.list('Person')"}).value
    assert [p["name"] for p in people] == ["Alice Smith"]


@check("multi-step-script-workflows")
def _fulfil(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert value(outcomes) == {
        "status": "shipped",
        "trackingNumber": "1Z999AA10123456784",
        "trackingUrl": "https://tracking.example/1Z999AA10123456784",
    }
    shipment = next(r for r in deployment.web.received if r["path"] == "/api.goshippo.com/shipments")
    assert shipment["headers"]["authorization"] == f"ShippoToken {SHIPPO_SECRET}"


@check("error-handling-patterns")
def _retry(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    # The first attempt succeeds: no retry.
    assert [r["path"] for r in deployment.web.received].count("/api.external.com/data") == 1


@check("transaction-patterns")
def _transaction(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert value(outcomes)["success"] is True


@check("batch-processing-patterns")
def _batch(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert value(outcomes) == {"total": 2, "successful": 2, "failed": 0, "errors": []}


@check("scenario-1-order-processing")
def _scenario_1(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    summary = value(outcomes)
    assert (summary["customer"], summary["total"], summary["items"]) == ("Bob Smith", 45, 2)
    # The module's Order.created handler runs in the worker: it takes the ordered items from stock.
    stock = poll(
        deployment,
        key,
        "(await db.list('Product')).map(p => p.stock)",
        lambda found: found == [9, 49],
    )
    assert stock == [9, 49]


@check("scenario-3-analytics-pipeline")
def _scenario_3(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    report = value(outcomes)
    assert report["insights"]["recommendations"] == ["Restock mugs", "Email dormant customers"]
    assert report["metrics"]["products"]["topSellers"][0]["name"] == "Mug"
    assert [r["path"] for r in deployment.web.received].count("/charts.acme.com/api/generate") == 3


@check("script-for-queries")
def _queries(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert [o["total"] for o in value(outcomes)] == [5]


@check("script-for-data-analysis")
def _analysis(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert value(outcomes) == {"totalOrders": 2, "revenue": 12.5}


@check("script-for-ai-content")
def _ai_content(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert isinstance(value(outcomes), str)


@check("script-for-ad-hoc-tasks")
def _ad_hoc(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert value(outcomes) == {"updated": 2}


@check("anti-module-for-one-time-query")
def _anti_module(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert value(outcomes) == []
    assert any("persist" in w for w in outcomes[0].structured.get("warnings", []))


@check("anti-script-for-recurring-task")
def _anti_recurring(deployment: Deployment, key: str, outcomes: list[Outcome]) -> None:
    assert any("nothing was persisted" in w for w in outcomes[0].structured.get("warnings", []))


def verify(deployment: Deployment, example: Example, key: str, outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        assert not outcome.is_error, outcome.text
    if example.id in MODULES:
        check_registration(example.id, registration(outcomes[0]))
    elif example.kind in ("module", "script+module", "call"):
        raise AssertionError(f"{example.id}: say in MODULES what it registers")
    if example.id in CHECKS:
        CHECKS[example.id](deployment, key, outcomes)


@pytest.mark.parametrize("example_id", runnable_ids())
def test_the_example_runs(deployment: Deployment, example_id: str) -> None:
    example = by_id(example_id)
    key = deployment.keys[tenant_of(example)]
    caller = None if example.attrs.get("caller") == "anonymous" else key
    seed(deployment, example_id, key)
    deployment.models.canned.clear()
    deployment.models.canned.update(CANNED.get(example_id, {}))
    deployment.models.requests.clear()
    deployment.web.received.clear()
    problem: Exception | None = None
    try:
        verify(deployment, example, key, run(deployment, example, caller))
    except Exception as failed:
        problem = failed
    if example_id in KNOWN_FAILURES:
        assert problem is not None, f"{example_id} works now: remove it from KNOWN_FAILURES"
    elif problem is not None:
        raise problem


def test_a_skipped_block_cannot_run_as_written(deployment: Deployment) -> None:
    """Each TypeScript block marked `skip` fails as its reason says: a placeholder or a redeclaration is a
    SyntaxError before anything runs, a name it never defines a ReferenceError (with an order in store, so
    the loops that use one run)."""
    key = deployment.keys[SKIPPED_TENANT]
    assert not call_do(deployment.server, key, {"script": "await db.create('Order', { status: 'pending' })"}).is_error
    for example in examples():
        if example.kind != "skip" or example.parts[0].lang != "ts":
            continue
        outcome = call_do(deployment.server, key, {"script": runnable_text(example.text, deployment.hosts)})
        reason = example.attrs["reason"]
        if "placeholder" in reason:
            expected = "SyntaxError: Unexpected token"
        elif "declared twice" in reason:
            expected = "SyntaxError: Identifier"
        else:
            assert "never defined" in reason, example.id
            expected = "Error: ReferenceError:"
        assert outcome.is_error and outcome.text.startswith(expected), (example.id, outcome.text)


def test_the_server_outlived_every_example(deployment: Deployment) -> None:
    assert deployment.server.process.poll() is None
    assert call_do(deployment.server, deployment.server.admin_key, {"script": "1 + 1"}).value == 2
