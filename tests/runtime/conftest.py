"""Fixtures driving the real Node runner through the Python API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcpdo.sandbox import Sandbox


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def sandbox(anyio_backend: str) -> AsyncIterator[Sandbox]:
    sb = Sandbox(size=2)
    await sb.start()
    yield sb
    await sb.close()


class RecordingHost:
    """The test's own host function: records every call and answers from a table of callables."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.answers = answers or {}

    async def __call__(self, name: str, args: list[Any]) -> Any:
        self.calls.append((name, args))
        answer = self.answers.get(name)
        if callable(answer):
            return await answer(*args)
        if answer is not None:
            return answer
        return {"name": name, "args": args}
