"""The host side of `ai`: checks a script's request, picks the model and the output schema, calls the provider,
checks its answer against the schema and counts the tokens of the execution."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from mcpdo.errors import InputError, McpdoError, ModelError, NotConfigured
from mcpdo.identity import Identity
from mcpdo.ports import Generation, ModelProvider, Usage
from mcpdo.sdk.args import arity, describe, obj
from mcpdo.sdk.policy import authorize
from mcpdo.settings import AI_SETTINGS, AiSettings

log = logging.getLogger("mcpdo.ai")

MAX_PROMPT_CHARS = 200_000
MAX_EMBED_CHARS = 50_000
MAX_BATCH = 100
MAX_SCHEMA_CHARS = 20_000
MAX_OUTPUT_TOKENS = 100_000
GENERATE_OPTIONS = ("prompt", "schema", "model", "temperature", "system", "maxTokens")


class OutputSchema(Protocol):
    """What `ai.generate` asks the model for: a JSON Schema object and its name."""

    @property
    def name(self) -> str: ...

    @property
    def schema(self) -> dict[str, Any]: ...

    @property
    def kind(self) -> Literal["text", "known", "custom"]: ...


class Schemas(Protocol):
    """The vocabulary's side of generation (mcpdo.vocabulary.Vocabulary)."""

    def output_schema(self, type_name: str | None) -> OutputSchema: ...

    def check_value(self, output: OutputSchema, value: Any) -> str | None: ...


class AiApi:
    """`ai.generate`, `ai.embed` and `ai.batch` for one caller and one execution; `usage` is its token count."""

    def __init__(
        self, identity: Identity, models: ModelProvider | None, settings: AiSettings, schemas: Schemas
    ) -> None:
        self._identity = identity
        self._models = models
        self._settings = settings
        self._schemas = schemas
        self.usage = Usage()
        self.calls = 0
        # One execution's model calls at once, batches and Promise.all alike: a script cannot flood the provider.
        self._gate = asyncio.Semaphore(settings.batch_concurrency)

    async def generate(self, args: list[Any]) -> dict[str, Any]:
        authorize(self._identity, "generate", "*")
        self._configured("ai.generate()")
        (options,) = arity("ai.generate", args, 1, 1)
        return await self._generate("ai.generate()", obj("ai.generate", "options", options))

    async def embed(self, args: list[Any]) -> list[float]:
        authorize(self._identity, "embed", "*")
        self._configured("ai.embed()")
        (text,) = arity("ai.embed", args, 1, 1)
        return await self._embed("ai.embed()", text)

    async def batch(self, args: list[Any]) -> list[Any]:
        authorize(self._identity, "batch", "*")
        self._configured("ai.batch()")
        (requests,) = arity("ai.batch", args, 1, 1)
        if not isinstance(requests, list):
            raise InputError(f"ai.batch(): requests must be an array, got {describe(requests)}")
        if len(requests) > MAX_BATCH:
            raise InputError(f"ai.batch(): at most {MAX_BATCH} requests per batch, got {len(requests)}")

        async def one(index: int, request: Any) -> Any:
            try:
                return await self._batch_item(f"ai.batch() item {index}", request)
            except McpdoError as exc:
                return {"error": exc.message}

        return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))

    def _configured(self, call: str) -> ModelProvider:
        if self._models is None:
            raise NotConfigured(NOT_CONFIGURED.format(call=call))
        return self._models

    async def _batch_item(self, call: str, request: Any) -> Any:
        item = obj(call, "request", request)
        kind = item.get("type")
        if kind == "generate":
            authorize(self._identity, "generate", "*")
            return await self._generate(call, {k: v for k, v in item.items() if k != "type"})
        if kind == "embed":
            if set(item) - {"type", "text"}:
                raise InputError(f"{call}: an embed request has only 'type' and 'text'")
            return await self._embed(call, item.get("text"))
        raise InputError(f"{call}: type must be 'generate' or 'embed', got {describe(kind)}")

    async def _generate(self, call: str, options: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(GENERATE_OPTIONS))
        if unknown:
            raise InputError(f"{call}: unknown option '{unknown[0]}' (options: {', '.join(GENERATE_OPTIONS)})")
        output = self._output(call, options.get("schema"))
        request = Generation(
            prompt=_text(call, "prompt", options.get("prompt"), MAX_PROMPT_CHARS),
            schema=output.schema,
            schema_name=output.name,
            model=self._model(call, options.get("model")),
            system=_text(call, "system", options["system"], MAX_PROMPT_CHARS) if options.get("system") else None,
            temperature=_number(call, "temperature", options.get("temperature"), 0.0, 2.0),
            max_tokens=_max_tokens(call, options.get("maxTokens")),
        )
        async with self._gate:
            generated = await self._configured(call).generate(request)
        self._count(generated.usage)
        mismatch = self._schemas.check_value(output, generated.value)
        if mismatch is not None:
            raise ModelError(f"{call}: the model's answer does not fit the schema {output.name}: {mismatch}")
        return generated.value

    async def _embed(self, call: str, text: Any) -> list[float]:
        model = self._settings.embed_model
        if model is None:
            raise NotConfigured(f"{call}: no embedding model is configured: set MCPDO_AI_EMBED_MODEL")
        checked = _text(call, "text", text, MAX_EMBED_CHARS)
        async with self._gate:
            embedded = await self._configured(call).embed(checked, model)
        self._count(embedded.usage)
        return embedded.vector

    def _output(self, call: str, schema: Any) -> OutputSchema:
        if schema is None or isinstance(schema, str):
            return self._schemas.output_schema(schema)
        if isinstance(schema, dict):
            return _plain_schema(call, schema)
        raise InputError(f"{call}: schema must be a $ type such as $.Article, got {describe(schema)}")

    def _model(self, call: str, name: Any) -> str:
        if name is None:
            if self._settings.model is None:
                raise NotConfigured(f"{call}: no default model is configured: set MCPDO_AI_MODEL or pass model")
            return self._settings.model
        if not isinstance(name, str) or not name or len(name) > 200:
            raise InputError(f"{call}: model must be a model name such as 'gpt-5', got {describe(name)}")
        # Portable names map to the provider's ids; any other name is passed on as a provider id.
        return self._settings.models.get(name, name)

    def _count(self, usage: Usage) -> None:
        self.usage += usage
        self.calls += 1

    def report(self) -> dict[str, int] | None:
        """The execution's `usage` for structuredContent, or None when it called no model."""
        if not self.calls:
            return None
        return {
            "inputTokens": self.usage.input_tokens,
            "outputTokens": self.usage.output_tokens,
            "modelCalls": self.calls,
        }


class _PlainSchema:
    """A JSON Schema object a script passed itself instead of a `$` type."""

    kind: Literal["custom"] = "custom"
    name = "Output"

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema


def _plain_schema(call: str, schema: dict[str, Any]) -> OutputSchema:
    if schema.get("type") != "object":
        raise InputError(f"{call}: a JSON Schema passed as schema must have type 'object'")
    if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
        raise InputError(f"{call}: the schema is larger than {MAX_SCHEMA_CHARS} characters")
    return _PlainSchema(schema)


def _text(call: str, name: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{call}: {name} must be a non-empty string, got {describe(value)}")
    if len(value) > limit:
        raise InputError(f"{call}: {name} is longer than {limit} characters ({len(value)})")
    return value


def _number(call: str, name: str, value: Any, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InputError(f"{call}: {name} must be a number from {low:g} to {high:g}, got {describe(value)}")
    return float(value)


def _max_tokens(call: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise InputError(f"{call}: maxTokens must be an integer from 1 to {MAX_OUTPUT_TOKENS}, got {describe(value)}")
    return value


NOT_CONFIGURED = (
    "{call}: no model provider is configured on this deployment: set MCPDO_AI_PROVIDER (openai or bedrock) "
    "and its settings (" + ", ".join(AI_SETTINGS[1:]) + "); see the README, section ai"
)


def show_usage_logs(handler: logging.Handler | None = None) -> None:
    """Let the per-execution usage lines through (INFO, where the rest of the process logs warnings only);
    `handler`: where they go when nothing else handles them (the local server's stderr)."""
    log.setLevel(logging.INFO)
    if handler is not None and not logging.getLogger().handlers:
        log.addHandler(handler)


def log_usage(usage: Mapping[str, int], who: str) -> None:
    """One log line per execution that called a model: the token count, for cost accounting."""
    log.info(
        "ai usage for %s: %d input tokens, %d output tokens, %d model calls",
        who,
        usage["inputTokens"],
        usage["outputTokens"],
        usage["modelCalls"],
    )
