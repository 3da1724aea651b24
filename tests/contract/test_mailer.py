"""Mailer contract: every adapter keeps one message per idempotency key and refuses one without a recipient."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mcpdo.adapters.memory import MemoryMailer
from mcpdo.adapters.sqlite_outbox import SqliteOutbox
from mcpdo.errors import InputError
from mcpdo.ports import Mailer

pytestmark = pytest.mark.anyio

MAILERS: dict[str, Callable[[Path], Mailer]] = {
    "memory": lambda path: MemoryMailer(),
    "outbox": lambda path: SqliteOutbox(path / "outbox.db"),
}


@pytest.fixture(params=sorted(MAILERS))
async def mailer(request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str) -> AsyncIterator[Mailer]:
    sender = MAILERS[request.param](tmp_path)
    try:
        yield sender
    finally:
        await sender.close()


async def test_the_mailer_keeps_one_message_per_idempotency_key(mailer: Mailer) -> None:
    message = {
        "to": "alice@example.com",
        "from": "shop@example.com",
        "subject": "Order shipped",
        "body": "Hi",
        "eventId": "evt_1",
    }
    await mailer.send(message, "evt_1")
    await mailer.send(message, "evt_1")
    await mailer.send({**message, "to": ["bob@example.com"]}, "evt_2")
    sent = await mailer.list()
    assert [m["to"] for m in sent] == [["bob@example.com"], "alice@example.com"]
    assert sent[1]["subject"] == "Order shipped" and sent[1]["eventId"] == "evt_1" and "sentAt" in sent[1]
    assert len(await mailer.list(limit=1)) == 1


@pytest.mark.parametrize(
    "message", [{"subject": "no recipient"}, {"to": ""}, {"to": []}, {"to": 42}, {"to": "not-an-address"}]
)
async def test_the_mailer_refuses_a_message_without_a_recipient(mailer: Mailer, message: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="'to'"):
        await mailer.send(message, "k1")
    assert await mailer.list() == []
