"""The delivery step that the local worker and a cloud events function both call, driven directly: one claimed
delivery in, its outcome recorded on the bus and in the runs log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from mcpdo.events import SCHEDULE_EVENT_TYPE, Deliveries, HandlerFailed, HandlerOutcome
from mcpdo.ports import Event, HandlerRef, ScheduleEntry
from mcpdo.timeparse import utc_now

from tests.contract.events_backends import (  # noqa: F401  (fixtures)
    EventsBackend,
    backend_factory_fixture,
    backend_fixture,
    clock_fixture,
)
from tests.contract.test_events import event, live

pytestmark = pytest.mark.anyio


class Invocations:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[tuple[HandlerRef, Event]] = []
        self.fail = fail

    async def __call__(self, handler: HandlerRef, ev: Event) -> HandlerOutcome:
        self.calls.append((handler, ev))
        if self.fail is not None:
            raise self.fail
        return HandlerOutcome(logs=({"level": "log", "message": "ran", "timestamp": "t"},), value=1)


def deliveries(backend: EventsBackend, invoke: Any) -> Deliveries:
    return Deliveries(
        backend.queue,
        backend.publisher,
        invoke,
        backend.runs,
        subscriptions=backend.subscriptions,
        schedules=backend.schedules,
        mailer=backend.mailer,
    )


async def test_a_delivered_event_runs_its_handler_once_completes_and_records_the_run(backend: EventsBackend) -> None:
    [handler] = await live(backend, "Order.created")
    sent = event()
    await backend.publisher.publish(sent)
    invoke = Invocations()
    [claimed] = await backend.claim(10)
    run = await deliveries(backend, invoke).deliver(claimed)
    assert invoke.calls == [(handler, sent)]
    assert (run.status, run.event_id, run.attempt, run.logs[0]["message"]) == ("ok", sent.id, 1, "ran")
    [done] = await backend.queue.deliveries(sent.id)
    assert done.status == "done"
    assert [r.id for r in await backend.runs.runs("acme")] == [run.id]


async def test_a_handler_failure_that_cannot_be_retried_is_a_dead_letter_with_its_text(backend: EventsBackend) -> None:
    await live(backend, "Order.created")
    await backend.publisher.publish(event())
    [claimed] = await backend.claim(10)
    run = await deliveries(backend, Invocations(HandlerFailed("owner revoked", retryable=False))).deliver(claimed)
    assert (run.status, run.error) == ("error", "owner revoked")
    [dead] = await backend.queue.dead_letters()
    assert (dead.id, dead.attempts, dead.last_error) == (claimed.id, 1, "owner revoked")


async def test_email_send_without_a_handler_goes_to_the_mailer_once_per_event(backend: EventsBackend) -> None:
    sent = event("Email.send", data={"to": "ann@example.com", "subject": "Hi", "body": "Hello"})
    await backend.publisher.publish(sent)
    invoke = Invocations()
    [claimed] = await backend.claim(10)
    run = await deliveries(backend, invoke).deliver(claimed)
    assert run.status == "ok" and invoke.calls == []
    [mail] = await backend.mailer.list()
    assert (mail["to"], mail["subject"]) == ("ann@example.com", "Hi")


async def test_firing_a_schedule_slot_queues_one_delivery_to_exactly_its_handler(backend: EventsBackend) -> None:
    [handler] = await live(backend, "Order.created")
    entry = ScheduleEntry(handler, "0 9 * * *")
    slot = datetime(2026, 1, 5, 9, 0, tzinfo=utc_now().tzinfo)
    steps = deliveries(backend, Invocations())
    fired = await steps.fire(entry, slot)
    again = await steps.fire(entry, slot)
    assert fired.id == again.id and fired.type == SCHEDULE_EVENT_TYPE
    assert [(d.handler, d.status) for d in await backend.queue.deliveries(fired.id)] == [(handler, "pending")]
