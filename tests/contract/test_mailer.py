"""Mailer contract: every adapter keeps one message per idempotency key and refuses one without a recipient.

The SES mailer runs against the session's moto server (a fresh state table per test); moto keeps what SES
sent in its backend, which this process shares with the threaded server, so the mail itself is checked too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from mcpdo.adapters.dynamodb_table import DynamoTable
from mcpdo.adapters.memory import MemoryMailer
from mcpdo.adapters.ses_mailer import MAX_RECORD_BYTES, MailRejected, SesMailer
from mcpdo.adapters.sqlite_outbox import SqliteOutbox
from mcpdo.errors import InputError, LimitExceeded, NotConfigured, StoreError
from mcpdo.ports import Mailer

from tests.support.aws import REGION

pytestmark = pytest.mark.anyio

SENDER = "mail@example.com"


def _ses_mailer(table: str, ses: Any = None, sender: str = SENDER) -> SesMailer:
    ses = ses or boto3.client("sesv2", region_name=REGION)
    ses.create_email_identity(EmailIdentity="example.com")  # every address of the domain may send
    return SesMailer(
        ses, DynamoTable(boto3.client("dynamodb", region_name=REGION), table, what="state table"), sender=sender
    )


def _ses(tmp_path: Path, request: pytest.FixtureRequest) -> Mailer:
    # The state table first: it starts the moto server and points boto3 at it.
    return _ses_mailer(request.getfixturevalue("state_table"))


MAILERS: dict[str, Callable[[Path, pytest.FixtureRequest], Mailer]] = {
    "memory": lambda path, request: MemoryMailer(),
    "outbox": lambda path, request: SqliteOutbox(path / "outbox.db"),
    "ses": _ses,
}


@pytest.fixture(params=sorted(MAILERS))
async def mailer(request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str) -> AsyncIterator[Mailer]:
    sender = MAILERS[request.param](tmp_path, request)
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
    await mailer.send(message, "evt_1", tenant="acme")
    await mailer.send(message, "evt_1", tenant="acme")
    await mailer.send({**message, "to": ["bob@example.com"]}, "evt_2", tenant="acme")
    sent = await mailer.list()
    assert [m["to"] for m in sent] == [["bob@example.com"], "alice@example.com"]
    assert sent[1]["subject"] == "Order shipped" and sent[1]["eventId"] == "evt_1" and "sentAt" in sent[1]
    assert len(await mailer.list(limit=1)) == 1


async def test_each_tenant_lists_only_its_own_mail_and_operators_list_everyone(mailer: Mailer) -> None:
    await mailer.send({"to": "a@example.com", "subject": "for acme"}, "evt_a", tenant="acme")
    await mailer.send({"to": "b@example.com", "subject": "for acme#2"}, "evt_b", tenant="acme#2")
    await mailer.send({"to": "c@example.com", "subject": "for acm"}, "evt_c", tenant="acm")
    assert [(m["subject"], m["tenant"]) for m in await mailer.list(tenant="acme")] == [("for acme", "acme")]
    assert [m["subject"] for m in await mailer.list(tenant="acme#2")] == ["for acme#2"]
    assert await mailer.list(tenant="nobody") == []
    assert [m["tenant"] for m in await mailer.list()] == ["acm", "acme#2", "acme"]


@pytest.mark.parametrize(
    "message", [{"subject": "no recipient"}, {"to": ""}, {"to": []}, {"to": 42}, {"to": "not-an-address"}]
)
async def test_the_mailer_refuses_a_message_without_a_recipient(mailer: Mailer, message: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="'to'"):
        await mailer.send(message, "k1", tenant="acme")
    assert await mailer.list() == []


async def test_the_mailer_refuses_text_that_is_not_valid_unicode_and_keeps_nothing(mailer: Mailer) -> None:
    with pytest.raises(InputError, match="lone surrogate"):
        await mailer.send({"to": "ann@example.com", "subject": "bad \ud800 text"}, "k1", tenant="acme")
    assert await mailer.list() == []


# --- what SES itself sent (moto's backend) -------------------------------------------------------------


def _ses_sent(subject: str) -> list[Any]:
    """The messages moto's SES accepted with `subject` (the backend is shared by every test of the session)."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return [m for m in ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages if m.subject == subject]


@pytest.fixture
async def ses_mailer(request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str) -> AsyncIterator[Mailer]:
    mailer = _ses(tmp_path, request)
    try:
        yield mailer
    finally:
        await mailer.close()


async def test_ses_sends_exactly_one_email_per_key_with_its_recipients_subject_and_body(ses_mailer: Mailer) -> None:
    subject = f"Order shipped {uuid.uuid4().hex}"
    message = {"to": "alice@example.com", "subject": subject, "body": "Grüße, ✓", "eventId": "evt_1"}
    for _ in range(3):
        await ses_mailer.send(message, "evt_1", tenant="acme")
    await ses_mailer.send({**message, "to": ["bob@example.com", "carol@example.com"]}, "evt_2", tenant="acme")
    sent = _ses_sent(subject)
    assert [m.destinations["ToAddresses"] for m in sent] == [
        ["alice@example.com"],
        ["bob@example.com", "carol@example.com"],
    ]
    assert all(m.body == "Grüße, ✓" and m.source == SENDER for m in sent)


async def test_ses_sends_as_the_configured_sender_with_the_message_from_as_reply_to(state_table: str) -> None:
    requests: list[dict[str, Any]] = []
    client = boto3.client("sesv2", region_name=REGION)
    ses_mailer = _ses_mailer(state_table, client)
    client.meta.events.register("provide-client-params.sesv2.SendEmail", lambda params, **_: requests.append(params))
    subject = f"Invoice {uuid.uuid4().hex}"
    message = {"to": "a@example.com", "from": "billing@example.com", "subject": subject, "body": {"total": 3}}
    await ses_mailer.send(message, "k", tenant="acme")
    [mail] = _ses_sent(subject)
    assert mail.source == SENDER and mail.body == '{"total": 3}'
    assert requests[0]["ReplyToAddresses"] == ["billing@example.com"]
    assert (await ses_mailer.list())[0]["body"] == {"total": 3}  # listed as handed to the mailer, like the outbox
    await ses_mailer.send({"to": "a@example.com", "from": 42, "subject": subject}, "k2", tenant="acme")
    assert requests[1]["ReplyToAddresses"] == [] and requests[1]["Content"]["Simple"]["Body"]["Text"]["Data"] == ""
    await ses_mailer.close()


async def test_ses_refuses_an_unverified_sender_naming_ses_and_the_code_and_records_nothing(state_table: str) -> None:
    mailer = _ses_mailer(state_table, sender="mail@unverified.test")
    subject = f"Unverified {uuid.uuid4().hex}"
    with pytest.raises(MailRejected, match=r"^SES refused the email from 'mail@unverified\.test' \(MessageRejected\)"):
        await mailer.send({"to": "a@example.com", "subject": subject}, "k", tenant="acme")
    assert MailRejected.retryable is False  # the delivery runner dead-letters it instead of retrying
    assert _ses_sent(subject) == [] and await mailer.list() == []
    await mailer.close()


def test_the_ses_mailer_needs_a_sender() -> None:
    ses = boto3.client("sesv2", region_name=REGION)
    table = DynamoTable(boto3.client("dynamodb", region_name=REGION), "t", what="state table")
    for sender in ("", "nobody"):
        with pytest.raises(NotConfigured, match="The SES mailer needs a sender address"):
            SesMailer(ses, table, sender=sender)


async def test_ses_refuses_an_email_its_record_could_not_hold_before_sending(ses_mailer: Mailer) -> None:
    subject = f"Huge {uuid.uuid4().hex}"
    with pytest.raises(LimitExceeded, match="at most 400 KB"):
        await ses_mailer.send(
            {"to": "a@example.com", "subject": subject, "body": "x" * MAX_RECORD_BYTES}, "k", tenant="acme"
        )
    assert _ses_sent(subject) == []


class FailingRecords(DynamoTable):
    """A state table whose next `failures` PutItem calls fail, as a crash between send and record would."""

    def __init__(self, name: str, failures: int) -> None:
        super().__init__(boto3.client("dynamodb", region_name=REGION), name, what="state table")
        self.failures = failures

    async def call(self, operation: str, **arguments: Any) -> dict[str, Any]:
        if operation == "put_item" and self.failures:
            self.failures -= 1
            raise StoreError("The state table operation put_item failed: InternalServerError")
        return await super().call(operation, **arguments)


async def test_a_failure_between_send_and_record_sends_again_at_least_once(state_table: str) -> None:
    ses = boto3.client("sesv2", region_name=REGION)
    ses.create_email_identity(EmailIdentity="example.com")
    mailer = SesMailer(ses, FailingRecords(state_table, failures=1), sender=SENDER)
    subject = f"Twice {uuid.uuid4().hex}"
    message = {"to": "a@example.com", "subject": subject, "body": "hi"}
    with pytest.raises(StoreError):
        await mailer.send(message, "evt_1", tenant="acme")  # sent, not recorded: the delivery fails and is retried
    await mailer.send(message, "evt_1", tenant="acme")  # the retry sends again: at least once, never zero
    await mailer.send(message, "evt_1", tenant="acme")  # recorded now: nothing more
    assert len(_ses_sent(subject)) == 2 and len(await mailer.list()) == 1
    await mailer.close()
