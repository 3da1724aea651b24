"""ModelProvider on Amazon Bedrock: Converse with one forced tool whose input schema is the requested schema
(structured output), InvokeModel for embeddings (Titan Text Embeddings v2, or Cohere Embed).

Retries are ours (mcpdo.adapters.model_retry), so the client is built with botocore's own retries off: one
rule, one count.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

from mcpdo.adapters.model_retry import Retryable, with_retries
from mcpdo.errors import ModelError
from mcpdo.ports import Embedded, Generated, Generation, Usage

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

T = TypeVar("T")
_RETRYABLE = {
    "ThrottlingException",
    "ServiceUnavailableException",
    "InternalServerException",
    "ModelNotReadyException",
    "TooManyRequestsException",
}
_REFUSED = {"content_filtered", "guardrail_intervened"}


class BedrockModels:
    """Bedrock's models for one region (the client's)."""

    def __init__(self, client: BedrockRuntimeClient, *, retries: int = 3, retry_wait_s: float = 0.5) -> None:
        self._client = client
        self._retries = retries
        self._retry_wait_s = retry_wait_s

    async def generate(self, request: Generation) -> Generated:
        kwargs: dict[str, Any] = {
            "modelId": request.model,
            "messages": [{"role": "user", "content": [{"text": request.prompt}]}],
            "toolConfig": {
                "tools": [
                    {
                        "toolSpec": {
                            "name": request.schema_name,
                            "description": f"Return the answer as {request.schema_name}",
                            "inputSchema": {"json": request.schema},
                        }
                    }
                ],
                "toolChoice": {"tool": {"name": request.schema_name}},
            },
        }
        if request.system:
            kwargs["system"] = [{"text": request.system}]
        inference: dict[str, Any] = {}
        if request.temperature is not None:
            inference["temperature"] = request.temperature
        if request.max_tokens is not None:
            inference["maxTokens"] = request.max_tokens
        if inference:
            kwargs["inferenceConfig"] = inference
        # As plain JSON: the typed dict of the stubs is read like any answer.
        answer: dict[str, Any] = dict(
            await self._call("ai.generate()", request.model, lambda: self._client.converse(**kwargs))
        )
        usage = answer.get("usage") or {}
        return Generated(
            value=_tool_input(answer, request.schema_name),
            usage=Usage(int(usage.get("inputTokens", 0)), int(usage.get("outputTokens", 0))),
        )

    async def embed(self, text: str, model: str) -> Embedded:
        cohere = model.startswith("cohere.") or ".cohere." in model
        body = {"texts": [text], "input_type": "search_document"} if cohere else {"inputText": text}
        answer = await self._call(
            "ai.embed()",
            model,
            lambda: self._client.invoke_model(
                modelId=model, body=json.dumps(body), contentType="application/json", accept="application/json"
            ),
        )
        try:
            parsed = json.loads(answer["body"].read())
            vector = parsed["embeddings"][0] if cohere else parsed["embedding"]
        except (KeyError, IndexError, TypeError, ValueError):
            raise ModelError(f"ai.embed(): Bedrock model {model} answered without an embedding") from None
        if not isinstance(vector, list) or not all(isinstance(x, int | float) for x in vector):
            raise ModelError(f"ai.embed(): Bedrock model {model} answered with an embedding that is not numbers")
        tokens = parsed.get("inputTextTokenCount", 0)
        return Embedded(vector=[float(x) for x in vector], usage=Usage(tokens if isinstance(tokens, int) else 0, 0))

    async def close(self) -> None:
        return None

    async def _call(self, call: str, model: str, method: Callable[[], T]) -> T:
        async def attempt() -> T:
            try:
                return await asyncio.to_thread(method)
            except ClientError as exc:
                raise self._error(call, model, exc) from None
            except ReadTimeoutError:
                raise ModelError(f"{call}: Bedrock model {model} did not answer in time") from None
            except BotoCoreError as exc:
                raise Retryable(f"{call}: Bedrock could not be reached ({type(exc).__name__})") from None

        return await with_retries(attempt, retries=self._retries, wait_base_s=self._retry_wait_s)

    def _error(self, call: str, model: str, exc: ClientError) -> ModelError:
        error = exc.response.get("Error", {})
        code = error.get("Code", "error")
        message = " ".join(str(error.get("Message", "")).split())[:300]
        if code in _RETRYABLE:
            return Retryable(f"{call}: Bedrock answered {code} for {model} after {self._retries + 1} attempts")
        if code == "AccessDeniedException":
            return ModelError(
                f"{call}: Bedrock refused access to {model} ({message}): enable the model in the Bedrock console "
                "and allow bedrock:InvokeModel on it"
            )
        if code == "ResourceNotFoundException":
            return ModelError(f"{call}: Bedrock has no model {model} (map script names with MCPDO_AI_MODELS)")
        if code == "ModelTimeoutException":
            return ModelError(f"{call}: Bedrock model {model} did not answer in time")
        return ModelError(f"{call}: Bedrock answered {code} for {model}: {message}")


def _tool_input(answer: dict[str, Any], name: str) -> dict[str, Any]:
    stop = answer.get("stopReason")
    if stop in _REFUSED:
        raise ModelError(f"ai.generate(): the model refused ({stop})")
    content = (answer.get("output") or {}).get("message", {}).get("content") or []
    for block in content:
        use = block.get("toolUse") if isinstance(block, dict) else None
        if use and use.get("name") == name:
            value = use.get("input")
            if not isinstance(value, dict):
                break
            return value
    if stop == "max_tokens":
        raise ModelError("ai.generate(): the answer was cut at maxTokens before it was complete; raise maxTokens")
    raise ModelError(f"ai.generate(): the model returned no {name} object")
