"""ModelProvider for any OpenAI-compatible server (OpenAI, Ollama, vLLM, llama.cpp, LiteLLM) over httpx.

Structured output asks for `response_format: json_schema`; a server that refuses that option is asked again
with one forced tool call whose parameters are the schema, and is remembered as such. The API key goes only
into the Authorization header: never into an error text or a log line.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from mcpdo.adapters.model_retry import Retryable, with_retries
from mcpdo.errors import ModelError
from mcpdo.ports import Embedded, Generated, Generation, Usage

INSTRUCTIONS = "Answer with one JSON object that matches the schema {name}. Output only the JSON."
# How a server says it does not know response_format / json_schema (400 or 422 with one of these words).
_NO_RESPONSE_FORMAT = re.compile(r"response_format|json_schema|structured", re.IGNORECASE)
_NO_MAX_TOKENS = re.compile(r"max_tokens", re.IGNORECASE)


class OpenAIModels:
    """Chat completions and embeddings of one OpenAI-compatible base URL (`.../v1`)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 60.0,
        retries: int = 3,
        retry_wait_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._key = api_key or ""
        self._where = f"the model provider at {httpx.URL(base_url).host or base_url}"
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            transport=transport,
            trust_env=False,
        )
        self._timeout_s = timeout_s
        self._retries = retries
        self._retry_wait_s = retry_wait_s
        self._tools_only = False  # learnt: the server has no response_format
        self._completion_tokens_name = "max_tokens"

    async def generate(self, request: Generation) -> Generated:
        body = self._chat_body(request)
        # At most one adaptation per option the server may not take (response_format, max_tokens).
        for _ in range(2):
            try:
                answer = await self._post("chat/completions", body)
                break
            except _BadRequest as exc:
                body = self._adapt(request, body, exc.refusal)
        else:
            answer = await self._post("chat/completions", body)
        return Generated(value=self._object_of(answer, request), usage=_usage(answer))

    async def embed(self, text: str, model: str) -> Embedded:
        answer = await self._post("embeddings", {"model": model, "input": text})
        try:
            vector = answer["data"][0]["embedding"]
        except (KeyError, IndexError, TypeError):
            raise ModelError(f"ai.embed(): {self._where} answered without an embedding") from None
        if not isinstance(vector, list) or not all(isinstance(x, int | float) for x in vector):
            raise ModelError(f"ai.embed(): {self._where} answered with an embedding that is not numbers")
        return Embedded(vector=[float(x) for x in vector], usage=_usage(answer))

    async def close(self) -> None:
        await self._client.aclose()

    def _chat_body(self, request: Generation) -> dict[str, Any]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages.append({"role": "user", "content": request.prompt})
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body[self._completion_tokens_name] = request.max_tokens
        if self._tools_only:
            return _with_tool(body, request)
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": request.schema_name, "schema": request.schema},
        }
        messages.insert(0, {"role": "system", "content": INSTRUCTIONS.format(name=request.schema_name)})
        return body

    def _adapt(self, request: Generation, body: dict[str, Any], refusal: str) -> dict[str, Any]:
        """The request again, without what a 400 said the server does not take; ModelError when it is
        something else."""
        if "response_format" in body and _NO_RESPONSE_FORMAT.search(refusal):
            self._tools_only = True
        elif "max_tokens" in body and _NO_MAX_TOKENS.search(refusal):
            # Newer OpenAI models take only max_completion_tokens.
            self._completion_tokens_name = "max_completion_tokens"
        else:
            raise ModelError(f"ai.generate(): {self._where} refused the request: {refusal}")
        return self._chat_body(request)

    def _object_of(self, answer: dict[str, Any], request: Generation) -> dict[str, Any]:
        try:
            choice = answer["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise ModelError(f"ai.generate(): {self._where} answered without a message") from None
        if message.get("refusal"):
            raise ModelError(f"ai.generate(): the model refused: {self._redacted(str(message['refusal']))[:300]}")
        finish = choice.get("finish_reason")
        if finish == "content_filter":
            raise ModelError("ai.generate(): the model refused: its content filter stopped the answer")
        calls = message.get("tool_calls") or []
        text = calls[0].get("function", {}).get("arguments") if calls else message.get("content")
        if finish == "length" and not calls:
            raise ModelError("ai.generate(): the answer was cut at maxTokens before it was complete; raise maxTokens")
        return _parse_object(text, request.schema_name)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async def attempt() -> dict[str, Any]:
            try:
                response = await self._client.post(path, json=body)
            except httpx.TimeoutException:
                raise ModelError(
                    f"{self._where} did not answer within {self._timeout_s:g} s (MCPDO_AI_TIMEOUT_MS)"
                ) from None
            except httpx.TransportError as exc:
                raise Retryable(f"{self._where} could not be reached ({type(exc).__name__})") from None
            except httpx.HTTPError as exc:
                raise ModelError(
                    f"{self._where} sent an answer that could not be read ({type(exc).__name__})"
                ) from None
            return self._answer(response)

        return await with_retries(attempt, retries=self._retries, wait_base_s=self._retry_wait_s)

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status == 429 or status >= 500:
            raise Retryable(f"{self._where} answered HTTP {status} after {self._retries + 1} attempts")
        if status in (401, 403):
            raise ModelError(f"{self._where} refused the credentials (HTTP {status}): check MCPDO_AI_API_KEY")
        if status == 404:
            raise ModelError(
                f"{self._where} answered HTTP 404: unknown model or path (map script model names to provider "
                f"ids with MCPDO_AI_MODELS; MCPDO_AI_BASE_URL usually ends in /v1): {self._excerpt(response)}"
            )
        if status in (400, 422):
            raise _BadRequest(self._excerpt(response))
        if not 200 <= status < 300:
            raise ModelError(f"{self._where} answered HTTP {status}: {self._excerpt(response)}")
        try:
            parsed = response.json()
        except ValueError:
            raise ModelError(f"{self._where} answered with something that is not JSON") from None
        if not isinstance(parsed, dict):
            raise ModelError(f"{self._where} answered with JSON that is not an object")
        return parsed

    def _excerpt(self, response: httpx.Response) -> str:
        try:
            detail = response.json().get("error", {})
            text = detail.get("message", "") if isinstance(detail, dict) else str(detail)
        except (ValueError, AttributeError):
            text = response.text
        return self._redacted(" ".join(str(text).split()))[:300]

    def _redacted(self, text: str) -> str:
        return text.replace(self._key, "[redacted]") if self._key else text


class _BadRequest(ModelError):
    """A 400/422: maybe an option this server does not take (the request is adapted once), maybe not."""

    def __init__(self, text: str) -> None:
        super().__init__(f"the model provider refused the request: {text}")
        self.refusal = text


def _with_tool(body: dict[str, Any], request: Generation) -> dict[str, Any]:
    tool = {
        "type": "function",
        "function": {
            "name": request.schema_name,
            "description": f"Return the answer as {request.schema_name}",
            "parameters": request.schema,
        },
    }
    return {**body, "tools": [tool], "tool_choice": {"type": "function", "function": {"name": request.schema_name}}}


def _parse_object(text: Any, name: str) -> dict[str, Any]:
    if not isinstance(text, str) or not text.strip():
        raise ModelError(f"ai.generate(): the model returned no {name} object")
    stripped = text.strip()
    # Some servers wrap JSON in a markdown fence even when asked not to.
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", stripped, re.DOTALL)
    try:
        value = json.loads(fenced.group(1) if fenced else stripped)
    except ValueError:
        raise ModelError(f"ai.generate(): the model's answer is not the JSON object {name}") from None
    if not isinstance(value, dict):
        raise ModelError(f"ai.generate(): the model's answer is not a JSON object ({name})")
    return value


def _usage(answer: dict[str, Any]) -> Usage:
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return Usage()
    return Usage(_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
