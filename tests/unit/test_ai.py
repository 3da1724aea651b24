"""`ai` on the host: each bad request has an error naming what is wrong, models map, batches keep order and
bound their concurrency, answers are checked against the schema, usage is counted. The provider is the real
OpenAI-compatible adapter against a fake model server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
from mcpdo.adapters.openai_models import OpenAIModels
from mcpdo.errors import AuthenticationRequired, InputError, ModelError, NotConfigured
from mcpdo.identity import Identity
from mcpdo.sdk.ai import AiApi
from mcpdo.settings import AiSettings
from mcpdo.vocabulary import Vocabulary, default_schemas_dir

from tests.support.fake_models import FakeModelServer, fake_model_server

pytestmark = pytest.mark.anyio

SETTINGS = AiSettings(
    provider="openai",
    base_url="http://unused",
    model="fake-default",
    models={"gpt-5": "fake-gpt"},
    embed_model="fake-embed",
)
MEMBER = Identity.for_roles(id="key_1", auth_type="apiKey", tenant="t1", roles=("member",))
ANONYMOUS = Identity.anonymous("t1")


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return Vocabulary.at(default_schemas_dir(None))


@pytest.fixture(scope="module")
def model_server() -> Iterator[FakeModelServer]:
    with fake_model_server() as fake:
        yield fake


@pytest.fixture
async def models(model_server: FakeModelServer) -> AsyncIterator[OpenAIModels]:
    model_server.canned.clear()
    model_server.requests.clear()
    provider = OpenAIModels(model_server.url, None, retries=0, retry_wait_s=0)
    yield provider
    await provider.close()


def api(models: Any, vocabulary: Vocabulary, identity: Identity = MEMBER, **changes: Any) -> AiApi:
    return AiApi(identity, models, replace(SETTINGS, **changes), vocabulary)


async def test_with_no_provider_every_call_names_the_settings_to_set(vocabulary: Vocabulary) -> None:
    ai = AiApi(MEMBER, None, AiSettings(), vocabulary)
    for call, args in ((ai.generate, [{"prompt": "hi"}]), (ai.embed, ["hi"]), (ai.batch, [[]])):
        with pytest.raises(NotConfigured) as caught:
            await call(args)
        for setting in ("MCPDO_AI_PROVIDER", "MCPDO_AI_BASE_URL", "MCPDO_AI_MODEL", "MCPDO_AI_EMBED_MODEL"):
            assert setting in caught.value.message


async def test_anonymous_callers_may_embed_but_not_generate_or_batch(
    models: OpenAIModels, vocabulary: Vocabulary
) -> None:
    ai = api(models, vocabulary, ANONYMOUS)
    assert await ai.embed(["hello"]) == [0.25, -0.5, 0.125, 1.0]
    with pytest.raises(AuthenticationRequired):
        await ai.generate([{"prompt": "hi"}])
    with pytest.raises(AuthenticationRequired):
        await ai.batch([[{"type": "embed", "text": "x"}]])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "prompt must be a non-empty string"),
        ({"prompt": "  "}, "prompt must be a non-empty string"),
        ({"prompt": "x" * 200_001}, "prompt is longer than 200000 characters"),
        ({"prompt": "hi", "promt": "typo"}, "unknown option 'promt'"),
        ({"prompt": "hi", "temperature": 3}, "temperature must be a number from 0 to 2"),
        ({"prompt": "hi", "temperature": True}, "temperature must be a number"),
        ({"prompt": "hi", "maxTokens": 0}, "maxTokens must be an integer from 1 to 100000"),
        ({"prompt": "hi", "maxTokens": 1.5}, "maxTokens must be an integer"),
        ({"prompt": "hi", "model": ""}, "model must be a model name"),
        ({"prompt": "hi", "schema": 42}, "schema must be a $ type"),
        ({"prompt": "hi", "schema": {"type": "string"}}, "must have type 'object'"),
    ],
)
async def test_a_bad_generate_request_is_an_error_naming_what_is_wrong(
    models: OpenAIModels, vocabulary: Vocabulary, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message.replace("$", r"\$")):
        await api(models, vocabulary).generate([options])


async def test_portable_model_names_map_to_provider_ids_and_others_pass_through(
    models: OpenAIModels, vocabulary: Vocabulary, model_server: FakeModelServer
) -> None:
    ai = api(models, vocabulary)
    await ai.generate([{"prompt": "a", "model": "gpt-5"}])
    await ai.generate([{"prompt": "b", "model": "llama3.2"}])
    await ai.generate([{"prompt": "c"}])
    assert [r["model"] for r in model_server.requests] == ["fake-gpt", "llama3.2", "fake-default"]


async def test_no_schema_and_text_give_an_object_with_text(
    models: OpenAIModels, vocabulary: Vocabulary, model_server: FakeModelServer
) -> None:
    model_server.canned["Text"] = {"text": "Hello"}
    ai = api(models, vocabulary)
    assert await ai.generate([{"prompt": "hi"}]) == {"text": "Hello"}
    assert await ai.generate([{"prompt": "hi", "schema": "Text"}]) == {"text": "Hello"}


async def test_an_answer_that_does_not_fit_the_schema_is_an_error_naming_it(
    models: OpenAIModels, vocabulary: Vocabulary, model_server: FakeModelServer
) -> None:
    model_server.canned["Text"] = {"words": "no text field"}
    with pytest.raises(ModelError, match="does not fit the schema Text"):
        await api(models, vocabulary).generate([{"prompt": "hi"}])


async def test_a_batch_keeps_request_order_reports_failed_items_and_counts_usage(
    models: OpenAIModels, vocabulary: Vocabulary, model_server: FakeModelServer
) -> None:
    model_server.canned["Text"] = {"text": "ok"}
    ai = api(models, vocabulary)
    results = await ai.batch(
        [
            [
                {"type": "generate", "prompt": "one", "schema": "Text"},
                {"type": "embed", "text": "two"},
                {"type": "embed", "text": ""},
                {"type": "summarize", "text": "?"},
                "not an object",
                {"type": "generate", "prompt": "six", "schema": "Text"},
            ]
        ]
    )
    assert results[0] == {"text": "ok"} and results[5] == {"text": "ok"}
    assert results[1] == [0.25, -0.5, 0.125, 1.0]
    assert "text must be a non-empty string" in results[2]["error"]
    assert "type must be 'generate' or 'embed'" in results[3]["error"]
    assert "request must be an object" in results[4]["error"]
    assert ai.report() == {"inputTokens": 11 * 2 + 3, "outputTokens": 7 * 2, "modelCalls": 3}


async def test_a_batch_runs_at_most_the_configured_number_of_requests_at_once(
    models: OpenAIModels, vocabulary: Vocabulary, model_server: FakeModelServer
) -> None:
    model_server.delay_s, model_server.most_in_flight = 0.02, 0
    try:
        results = await api(models, vocabulary, batch_concurrency=3).batch(
            [[{"type": "embed", "text": str(i)} for i in range(12)]]
        )
    finally:
        model_server.delay_s = 0.0
    assert len(results) == 12 and all(r == [0.25, -0.5, 0.125, 1.0] for r in results)
    assert 1 < model_server.most_in_flight <= 3


async def test_model_calls_outside_a_batch_share_the_same_bound(
    models: OpenAIModels, vocabulary: Vocabulary, model_server: FakeModelServer
) -> None:
    model_server.delay_s, model_server.most_in_flight = 0.02, 0
    ai = api(models, vocabulary, batch_concurrency=2)
    try:
        # What `await Promise.all(items.map((i) => ai.embed(i)))` does: every call at once.
        vectors = await asyncio.gather(*(ai.embed([str(i)]) for i in range(8)))
    finally:
        model_server.delay_s = 0.0
    assert len(vectors) == 8
    assert 1 < model_server.most_in_flight <= 2


async def test_a_batch_is_bounded_in_size(models: OpenAIModels, vocabulary: Vocabulary) -> None:
    with pytest.raises(InputError, match="at most 100 requests"):
        await api(models, vocabulary).batch([[{"type": "embed", "text": "x"}] * 101])


async def test_embed_without_an_embedding_model_names_its_setting(models: OpenAIModels, vocabulary: Vocabulary) -> None:
    with pytest.raises(NotConfigured, match="MCPDO_AI_EMBED_MODEL"):
        await api(models, vocabulary, embed_model=None).embed(["x"])
