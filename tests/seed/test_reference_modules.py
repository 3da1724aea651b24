"""The reference's AI-driven modules: registered as shown, their events fire, their effects appear.

Their `ai.generate` calls reach a fake OpenAI-compatible model server on loopback through the real adapter;
it answers each schema with what a model would (`ai.models.canned`). Code-only examples get the frontmatter
a module needs. Everything else is the reference's text.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.seed.conftest import AiDeployment
from tests.support.client import connect, text_of, value_of
from tests.support.seed import reference, section
from tests.support.server import RunningServer
from tests.support.sync import outbox, run_script, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(ai: AiDeployment) -> RunningServer:
    return ai.server


def frontmatter(module_id: str, kind: str) -> str:
    return f"---\n$type: {kind}\n$id: {module_id}\n$context: https://platform.do\n---\n"


async def register(server: RunningServer, module: str) -> dict[str, Any]:
    async with connect(server.url, key=server.admin_key) as client:
        result = await client.call_tool("do", {"module": module})
    assert not result.is_error, text_of(result)
    return dict(value_of(result))


async def test_the_customer_support_agent_answers_tickets_and_escalates(
    server: RunningServer, ai: AiDeployment
) -> None:
    text = reference()
    start = text.index("module: `", text.index("Example: Creating a Module")) + len("module: `")
    agent = text[start : text.index("\n`,\n})", start)].replace("\\`", "`").replace("\\${", "${") + "\n"
    ai.models.canned["Response"] = {"text": "We are on it", "sentiment": "negative", "escalate": True}
    summary = await register(server, agent)
    assert (summary["id"], summary["type"]) == ("https://platform.do/agents/customer-support", "Agent")
    await register(
        server,
        frontmatter("/test/reviews", "Workflow")
        + "on($.Human.review, async (review) => { await db.create('Review', review) })\n",
    )
    run_script(server, "await send($.Ticket.created, { id: 'tic_1', message: 'My order is late' })")
    response = wait_for(lambda: run_script(server, "await db.list('Response')"))
    assert response[0]["ticketId"] == "tic_1"
    assert (response[0]["message"], response[0]["sentiment"]) == ("We are on it", "negative")
    review = wait_for(lambda: run_script(server, "await db.list('Review')"))
    assert review[0]["ticketId"] == "tic_1"


async def test_content_workflow_analyses_approves_and_publishes_articles(
    server: RunningServer, ai: AiDeployment
) -> None:
    code = section("// Content approval workflow", until="Scenario 3: Analytics Pipeline")
    ai.models.canned.update(
        {
            "Analysis": {"qualityScore": 9, "readabilityGrade": 8, "seoRecommendations": ["add keywords"]},
            "SocialMediaPosts": {"twitter": "New post!", "linkedin": "Read our article", "facebook": "Check this out"},
            "Text": {"text": "A bright office at dawn"},
        }
    )
    summary = await register(server, frontmatter("/workflows/content", "Workflow") + code)
    assert [h["event"] for h in summary["handlers"]] == ["Article.submitted", "Article.approved"]
    assert [s["cron"] for s in summary["schedules"]] == ["0 2 * * *"]
    article = run_script(
        server,
        """const article = await db.create('Article', {
  headline: 'Hello', articleBody: 'Body', description: 'Intro', slug: 'hello',
  author: { name: 'Ann', email: 'ann@example.com' } })
await send($.Article.submitted, article)
article""",
    )
    published = wait_for(
        lambda: (lambda a: a if a and a.get("status") == "published" else None)(
            run_script(server, f"await db.get('Article', '{article['id']}')")
        )
    )
    assert published["analysis"]["qualityScore"] == 9
    assert published["socialPosts"]["twitter"] == "New post!"
    notice = wait_for(lambda: [m for m in outbox(server) if m["to"] == "ann@example.com"])
    assert notice[0]["subject"] == "Your Article Has Been Published!"


async def test_support_automation_classifies_routes_and_escalates_critical_tickets(
    server: RunningServer, ai: AiDeployment
) -> None:
    code = section("// Customer support ticket handling", until="When to Use Each Mode")
    ai.models.canned.update(
        {
            "TicketClassification": {
                "urgency": "critical",
                "category": "billing",
                "estimatedResolutionTime": 4,
                "suggestedResponse": "Hi",
            },
            "ResponseAnalysis": {"helpfulness": 9, "clarity": 9, "professionalism": 9, "completeness": 9},
        }
    )
    summary = await register(server, frontmatter("/agents/support-automation", "Agent") + code)
    assert [h["event"] for h in summary["handlers"]] == ["Ticket.created", "Ticket.responded"]
    assert [s["cron"] for s in summary["schedules"]] == ["0 18 * * *"]
    await register(
        server,
        frontmatter("/test/escalations", "Workflow")
        + "on($.SMS.send, async (sms) => { await db.create('Page', sms) })\n",
    )
    ticket = run_script(
        server,
        """const ticket = await db.create('Ticket', { subject: 'Charged twice',
  description: 'My card was charged twice', customerName: 'Cy', customerEmail: 'cy@example.com', status: 'pending' })
await send($.Ticket.created, ticket)
ticket""",
    )
    classified = wait_for(
        lambda: (lambda t: t if t and t.get("urgency") else None)(
            run_script(server, f"await db.get('Ticket', '{ticket['id']}')")
        )
    )
    assert (classified["urgency"], classified["category"]) == ("critical", "billing")
    routed = wait_for(lambda: [m for m in outbox(server) if m["subject"].startswith("[CRITICAL] New Ticket")])
    assert routed[0]["to"] == "team@example.com"
    page = wait_for(lambda: run_script(server, "await db.list('Page')"))
    assert page[0]["message"].startswith("CRITICAL support ticket")
