"""The reference's AI scripts, verbatim, through the real tool against a fake model server and fake web
services on loopback: each returns schema-shaped objects, uses the mapped model, and reports its usage."""

from __future__ import annotations

from typing import Any

import pytest

from tests.seed.conftest import AiDeployment
from tests.support.client import connect, text_of, value_of
from tests.support.seed import section
from tests.support.sync import outbox, run_script

pytestmark = pytest.mark.anyio


async def call(ai: AiDeployment, script: str, key: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The script's value and the result's structured content."""
    async with connect(ai.server.url, key=key or ai.server.admin_key) as client:
        result = await client.call_tool("do", {"script": script})
    assert not result.is_error, text_of(result)
    return value_of(result), dict(result.structured_content or {})


async def test_product_descriptions_are_generated_as_text_with_the_mapped_model(ai: AiDeployment) -> None:
    ai.models.canned["Text"] = {"text": "Keeps drinks cold for a day."}
    for name in ("Bottle", "Mug"):
        run_script(ai.server, f"await db.create('Product', {{ name: '{name}' }})")
    script = section("// Get all products", until="Event-Driven Architecture")
    value, structured = await call(ai, script)
    assert len(value) == 2 and all(item["updated"] for item in value)
    products = run_script(ai.server, "await db.list('Product')")
    assert {p["description"] for p in products} == {"Keeps drinks cold for a day."}
    assert {r["model"] for r in ai.models.requests} == {"fake-gpt"}
    assert "Bottle" in str(ai.models.requests)
    assert structured["usage"] == {"inputTokens": 22, "outputTokens": 14, "modelCalls": 2}


async def test_growth_insights_come_back_as_schema_org_articles(ai: AiDeployment) -> None:
    run_script(
        ai.server,
        "await db.create('Business', { name: 'Rocket', industry: 'Technology', growthRate: 0.9 })\n"
        "await db.create('Business', { name: 'Slow', industry: 'Technology', growthRate: 0.1 })",
    )
    script = section("// Complex workflow in single script", until="Security & Permissions")
    insights, _ = await call(ai, script)
    assert len(insights) == 1
    assert isinstance(insights[0]["headline"], str) and isinstance(insights[0]["articleBody"], str)
    asked = ai.models.requests[0]["response_format"]["json_schema"]
    assert asked["name"] == "Article"
    assert {"headline", "articleBody"} <= set(asked["schema"]["properties"])
    assert ai.models.requests[0]["model"] == "fake-claude"
    stored = run_script(ai.server, "await db.list('Article')")
    assert stored[0]["headline"] == insights[0]["headline"]


async def test_the_monthly_report_fetches_metrics_and_mails_ai_insights(ai: AiDeployment) -> None:
    ai.models.canned["BusinessInsights"] = {
        "summary": "A strong month.",
        "analysis": "Revenue grew 12%.",
        "recommendations": ["Restock mugs", "Email dormant customers"],
    }
    ai.web.routes.update(
        {
            "/api/revenue": (200, {"total": 1200, "growth": 0.12, "forecast": 1300}),
            "/api/traffic": (200, {"visitors": 400, "pageViews": 1800}),
            "/api/generate": (200, {"chart": "https://charts.example/c1.png"}),
        }
    )
    run_script(ai.server, "await db.create('Order', { total: 30, status: 'paid', customerId: 'per_1', items: [] })")
    # The example's external services, pointed at the loopback one the deployment allow-lists.
    script = section("// Comprehensive analytics pipeline", until="Scenario 4: Customer Support Automation")
    script = script.replace("https://analytics.acme.com", ai.web.url).replace("https://charts.acme.com", ai.web.url)
    report, structured = await call(ai, script)
    assert report["insights"]["recommendations"] == ["Restock mugs", "Email dormant customers"]
    assert report["metrics"]["revenue"]["growth"] == 0.12
    assert [r["path"] for r in ai.web.received if r["method"] == "POST"].count("/api/generate") == 3
    assert ai.web.received[0]["headers"]["user-agent"].startswith("mcpdo/")
    mail = [m for m in outbox(ai.server) if m["subject"].startswith("Monthly Business Report")]
    assert "1. Restock mugs" in mail[0]["body"]
    assert structured["usage"]["modelCalls"] == 1


async def test_an_embedding_and_a_mixed_batch_return_vectors_and_objects_in_order(ai: AiDeployment) -> None:
    ai.models.canned["Text"] = {"text": "Bake it fresh."}
    value, _ = await call(
        ai,
        """const vector = await ai.embed('search text')
const results = await ai.batch([
  { type: 'generate', prompt: 'Write a slogan for a bakery', schema: $.Text },
  { type: 'embed', text: 'fresh sourdough bread' },
  { type: 'generate', prompt: 'x', schema: $.Text, temperature: 9 },
])
;({ vector, results })""",
    )
    assert value["vector"] == [0.25, -0.5, 0.125, 1.0]
    assert value["results"][0] == {"text": "Bake it fresh."}
    assert value["results"][1] == [0.25, -0.5, 0.125, 1.0]
    assert "temperature must be a number from 0 to 2" in value["results"][2]["error"]
    assert {r["model"] for r in ai.models.requests if r["path"].endswith("/embeddings")} == {"fake-embed"}


async def test_an_anonymous_script_may_embed_but_not_generate(ai: AiDeployment) -> None:
    async with connect(ai.server.url) as client:
        embedded = await client.call_tool("do", {"script": "await ai.embed('hello')"})
        generated = await client.call_tool("do", {"script": "await ai.generate({ prompt: 'hi' })"})
    assert value_of(embedded) == [0.25, -0.5, 0.125, 1.0]
    assert generated.is_error and "ai.generate() at line 1" in text_of(generated)


async def test_the_provider_key_never_reaches_the_script_result_or_an_error(ai: AiDeployment) -> None:
    ai.models.failures.extend([401])
    async with connect(ai.server.url, key=ai.server.admin_key) as client:
        failed = await client.call_tool("do", {"script": "await ai.generate({ prompt: 'hi', schema: $.Article })"})
    assert failed.is_error and "MCPDO_AI_API_KEY" in text_of(failed)
    assert "sk-fake-provider-key" not in str(failed)
    assert ai.models.headers[-1]["authorization"] == "Bearer sk-fake-provider-key"
