"""The ModelProvider port, one suite over both adapters, each faked at its client edge: the OpenAI-compatible
one against a model server on loopback, the Bedrock one through botocore's Stubber (which checks every
request and response against Bedrock's own shapes)."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from mcpdo.adapters.bedrock_models import BedrockModels
from mcpdo.adapters.openai_models import OpenAIModels
from mcpdo.errors import ModelError
from mcpdo.ports import Generation, ModelProvider, Usage

from tests.support.fake_models import EMBEDDING, FakeModelServer, fake_model_server

pytestmark = pytest.mark.anyio

SCHEMA = {
    "type": "object",
    "properties": {"headline": {"type": "string"}, "articleBody": {"type": "string"}},
    "required": ["headline", "articleBody"],
}
ARTICLE = {"headline": "Same-day delivery in Paris", "articleBody": "Starting today ..."}
SECRET_KEY = "sk-test-1234567890abcdef"


def request(**changes: Any) -> Generation:
    base: dict[str, Any] = {"prompt": "Write a post", "schema": SCHEMA, "schema_name": "Article", "model": "m-1"}
    return Generation(**{**base, **changes})


class Backend(Protocol):
    provider: ModelProvider

    def answers(self, value: dict[str, Any]) -> None: ...

    def throttles(self, times: int) -> None: ...

    def fails(self, times: int) -> None: ...

    def refuses(self) -> None: ...

    def embeds(self) -> None: ...

    def sent(self) -> list[dict[str, Any]]: ...


class OpenAIBackend:
    def __init__(self, fake: FakeModelServer) -> None:
        self.fake = fake
        self.provider = OpenAIModels(fake.url, SECRET_KEY, retries=3, retry_wait_s=0)

    def answers(self, value: dict[str, Any]) -> None:
        self.fake.canned["Article"] = value

    def throttles(self, times: int) -> None:
        self.fake.failures.extend([429] * times)

    def fails(self, times: int) -> None:
        self.fake.failures.extend([503] * times)

    def refuses(self) -> None:
        self.fake.refuse = True

    def embeds(self) -> None:
        return None

    def sent(self) -> list[dict[str, Any]]:
        return self.fake.requests


class BedrockBackend:
    def __init__(self) -> None:
        client = boto3.client(
            "bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
        )
        self.stubber = Stubber(client)
        self.stubber.activate()
        self.provider = BedrockModels(client, retries=3, retry_wait_s=0)
        self.calls: list[dict[str, Any]] = []
        client.meta.events.register_first("before-parameter-build.bedrock-runtime.*", self._record)

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(params)

    def answers(self, value: dict[str, Any]) -> None:
        self.stubber.add_response("converse", converse_answer(value))

    def throttles(self, times: int) -> None:
        for _ in range(times):
            self.stubber.add_client_error("converse", "ThrottlingException", "Too many requests", 429)

    def fails(self, times: int) -> None:
        for _ in range(times):
            self.stubber.add_client_error("converse", "ServiceUnavailableException", "Unavailable", 503)

    def refuses(self) -> None:
        answer = converse_answer({})
        answer["stopReason"] = "content_filtered"
        answer["output"]["message"]["content"] = [{"text": "I can't help with that."}]
        self.stubber.add_response("converse", answer)

    def embeds(self) -> None:
        data = json.dumps({"embedding": EMBEDDING, "inputTextTokenCount": 3}).encode()
        body = StreamingBody(io.BytesIO(data), len(data))
        self.stubber.add_response("invoke_model", {"body": body, "contentType": "application/json"})

    def sent(self) -> list[dict[str, Any]]:
        return self.calls


def converse_answer(value: dict[str, Any]) -> dict[str, Any]:
    return {
        "output": {
            "message": {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "tool_1", "name": "Article", "input": value}}],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18},
        "metrics": {"latencyMs": 1},
    }


@pytest.fixture(scope="module")
def model_server() -> Iterator[FakeModelServer]:
    with fake_model_server() as fake:
        yield fake


@pytest.fixture(params=["openai", "bedrock"])
async def backend(request: pytest.FixtureRequest, model_server: FakeModelServer) -> AsyncIterator[Backend]:
    model_server.canned.clear()
    model_server.failures.clear()
    model_server.requests.clear()
    model_server.refuse = False
    model_server.response_format = True
    chosen: Backend = OpenAIBackend(model_server) if request.param == "openai" else BedrockBackend()
    yield chosen
    await chosen.provider.close()


async def test_generate_returns_the_object_the_model_gave_for_the_schema_and_its_usage(backend: Backend) -> None:
    backend.answers(ARTICLE)
    generated = await backend.provider.generate(request(system="Be brief", temperature=0.3, max_tokens=800))
    assert generated.value == ARTICLE
    assert generated.usage == Usage(11, 7)
    sent = json.dumps(backend.sent()[-1])
    assert "articleBody" in sent and "Be brief" in sent and "m-1" in sent


async def test_throttling_is_retried_with_back_off_until_it_succeeds(backend: Backend) -> None:
    backend.throttles(2)
    backend.answers(ARTICLE)
    generated = await backend.provider.generate(request())
    assert generated.value == ARTICLE
    assert len(backend.sent()) == 3


async def test_server_errors_that_outlast_the_retries_are_a_clear_error(backend: Backend) -> None:
    backend.fails(4)
    with pytest.raises(ModelError, match=r"503|ServiceUnavailable") as caught:
        await backend.provider.generate(request())
    assert "4 attempts" in caught.value.message
    assert SECRET_KEY not in caught.value.message


async def test_a_refusal_is_an_error_that_says_the_model_refused(backend: Backend) -> None:
    backend.refuses()
    with pytest.raises(ModelError, match="refused"):
        await backend.provider.generate(request())


async def test_embed_returns_the_vector_as_floats(backend: Backend) -> None:
    backend.embeds()
    embedded = await backend.provider.embed("fresh sourdough bread", "embed-1")
    assert embedded.vector == EMBEDDING
    assert all(isinstance(x, float) for x in embedded.vector)


async def test_openai_servers_without_response_format_get_one_forced_tool_call(
    model_server: FakeModelServer,
) -> None:
    model_server.response_format = False
    model_server.canned["Article"] = ARTICLE
    model_server.requests.clear()
    provider = OpenAIModels(model_server.url, None, retries=0, retry_wait_s=0)
    try:
        assert (await provider.generate(request())).value == ARTICLE
        assert (await provider.generate(request())).value == ARTICLE
    finally:
        await provider.close()
        model_server.response_format = True
    first, second, third = model_server.requests
    assert "response_format" in first and "tools" not in first
    assert second["tool_choice"] == {"type": "function", "function": {"name": "Article"}}
    assert "response_format" not in third, "the server's answer is remembered"


async def test_the_openai_key_is_sent_as_a_bearer_token_and_never_shown_in_errors(
    model_server: FakeModelServer,
) -> None:
    model_server.failures.extend([401])
    model_server.headers.clear()
    provider = OpenAIModels(model_server.url, SECRET_KEY, retries=0, retry_wait_s=0)
    try:
        with pytest.raises(ModelError, match="MCPDO_AI_API_KEY") as caught:
            await provider.generate(request())
    finally:
        await provider.close()
    assert model_server.headers[-1]["authorization"] == f"Bearer {SECRET_KEY}"
    assert SECRET_KEY not in caught.value.message


async def test_an_unreachable_openai_server_is_an_error_naming_it_without_the_key() -> None:
    provider = OpenAIModels("http://127.0.0.1:9/v1", SECRET_KEY, retries=1, retry_wait_s=0)
    try:
        with pytest.raises(ModelError, match="could not be reached") as caught:
            await provider.generate(request())
    finally:
        await provider.close()
    assert SECRET_KEY not in caught.value.message
