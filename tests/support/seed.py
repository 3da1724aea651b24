"""Pieces of the public reference (`../shared/seed`), taken verbatim so tests run exactly what it shows."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from tests.support.fake_models import FakeModelServer
from tests.support.fake_web import FakeWeb

# The reference as the project's shared folder holds it, beside the repository; and the repository's own copy,
# so a clone on its own (CI in a fresh folder) runs the same examples.
SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "000_8e3f111f32c4e6cd.txt"
COPY = Path(__file__).resolve().parents[1] / "seed" / "reference.txt"


# The text copy replaced every e-mail address with this marker; the examples need real addresses back.
OBFUSCATED_ADDRESS = "[email protected]"


@cache
def reference() -> str:
    text = COPY.read_text(encoding="utf-8")
    if SEED.exists() and SEED.read_text(encoding="utf-8") != text:
        raise AssertionError(f"{COPY} differs from the reference at {SEED}: copy the reference over it")
    return text.replace(OBFUSCATED_ADDRESS, "team@example.com")


def section(start: str, *, until: str) -> str:
    """The text from the line holding `start` up to (not including) `until`, where prose resumes."""
    text = reference()
    begin = text.index(start)
    begin = text.rfind("\n", 0, begin) + 1
    end = text.index(until, begin)
    return text[begin:end].rstrip() + "\n"


def module_after(heading: str, *, until: str) -> str:
    """The MDXLD document that follows `heading`: from its first `---` line up to `until`."""
    text = reference()
    begin = text.index("\n---\n", text.index(heading)) + 1
    end = text.index(until, begin)
    return text[begin:end].rstrip() + "\n"


def reference_modules() -> dict[str, str]:
    """The two MDXLD documents the reference shows (its text copy lost their fences and escapes)."""
    workflow = module_after("MDXLD Module Structure", until="Module Parameter Features")
    text = reference()
    start = text.index("module: `", text.index("Example: Creating a Module")) + len("module: `")
    agent = text[start : text.index("\n`,\n})", start)].replace("\\`", "`").replace("\\${", "${") + "\n"
    return {"workflow": workflow, "agent": agent}


# The reference's module examples that need no external service, with the frontmatter a module needs.
ORDER_FULFILLMENT = module_after("MDXLD Module Structure", until="Module Parameter Features")

ECOMMERCE = """---
$type: Service
$id: /services/ecommerce-handlers
$context: https://platform.do
---
# E-commerce event handlers

""" + section("// E-commerce event handlers module", until="Exporting Scheduled Tasks")

ANALYTICS = """---
$type: Workflow
$id: /workflows/analytics-tasks
$context: https://platform.do
---
# Analytics and reporting tasks

""" + section("// Analytics and reporting tasks", until="Module Composition and Reusability")


# The portable model names the reference uses, mapped as a deployment would (MCPDO_AI_MODELS).
MODEL_MAP = "gpt-5=fake-gpt,claude-sonnet-4.5=fake-claude"


def ai_settings(models: FakeModelServer, web: FakeWeb) -> dict[str, str]:
    """The settings of a deployment whose models are `models` and whose web is `web` (allow-listed)."""
    return {
        "MCPDO_RETRY_BASE_MS": "50",
        "MCPDO_AI_PROVIDER": "openai",
        "MCPDO_AI_BASE_URL": models.url,
        "MCPDO_AI_API_KEY": "sk-fake-provider-key",
        "MCPDO_AI_MODEL": "fake-default",
        "MCPDO_AI_MODELS": MODEL_MAP,
        "MCPDO_AI_EMBED_MODEL": "fake-embed",
        "MCPDO_FETCH_ALLOW": web.host_port,
    }
