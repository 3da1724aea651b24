"""The events and schedules functions: thin entrypoints over the core's `route`, `run_queued` and `fire`.

The events function takes SQS batches from two queues:

- the events queue, where the bus's one rule puts every event `send` published (an EventBridge envelope):
  the core routes it (subscription lookup, one delivery per handler, stored and dispatched), once per event
  id, so a redelivered message changes nothing;
- the deliveries queue, one message per delivery: the core claims it by id and runs it. A failed attempt
  keeps its message, which comes back after the back-off (its visibility); after the last attempt the
  delivery is a dead letter in the store and the message is set aside in the dead-letter queue.

Records run one after another: each delivery may run a handler for the whole script budget, and the one
warm runner of the environment serves one at a time. When the invocation's remaining time no longer holds
another budget, each delivery left is sent again as a fresh message, visible at once: SQS counts receives,
its redrive moves a message aside after `maxReceiveCount` of them, and only attempts may count. A message
that comes early (the delivery not due yet, or held by a live claim) is sent again for when it is due.

The schedules function gets one Scheduler fire per invocation (the schedule's Input): the core fires that
slot unless the entry is no longer live, and the fire becomes a delivery like any other.

Everything is reported as partial batch responses (`batchItemFailures`): a record that fails for a reason
no attempt recorded (the store unavailable) comes back by SQS's own redelivery, and after the queue's
`maxReceiveCount` the redrive moves it to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mcpdo import eventloop
from mcpdo.bootstrap import App, build
from mcpdo.errors import InputError, LimitExceeded, NotConfigured
from mcpdo.events import Settled
from mcpdo.operations import note
from mcpdo.ports import Event, QueueMessages, ScheduleFires
from mcpdo.server.lambda_runtime import LambdaEnvironment, route_core_logs
from mcpdo.settings import EVENTS_NOT_DEPLOYED, SCHEDULES_NOT_DEPLOYED, Settings
from mcpdo.timeparse import utc_now

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics

# Time kept back from a handler's budget for settling its delivery and answering the batch.
SETTLE_MARGIN_MS = 5_000
# A claim outlives the invocation that took it: no other consumer runs the delivery meanwhile.
LEASE_MARGIN_SECONDS = 30.0

log = logging.getLogger("mcpdo.events")

Observe = Callable[..., None]
"""`observe(what, **fields)`: one structured log line and one metric per outcome (see `PowertoolsObserver`)."""


def _ignore(what: str, **fields: Any) -> None:
    return None


@dataclass(frozen=True)
class Record:
    """The parts of one SQS record the consumer uses."""

    message_id: str
    receipt: str
    body: str

    @staticmethod
    def of(raw: Any) -> Record:
        if not isinstance(raw, Mapping):
            raise InputError("An SQS record must be an object")
        message_id, receipt, body = (raw.get(name) for name in ("messageId", "receiptHandle", "body"))
        if not (isinstance(message_id, str) and isinstance(receipt, str) and isinstance(body, str)):
            raise InputError("An SQS record needs messageId, receiptHandle and body as strings")
        return Record(message_id, receipt, body)


class EventsConsumer:
    """One SQS batch of events or deliveries through the core; returns the batch's failures."""

    def __init__(self, app: App, messages: QueueMessages, *, observe: Observe = _ignore) -> None:
        self._app = app
        self._messages = messages
        self._budget_ms = app.settings.authenticated_timeout_ms
        self._observe = observe

    async def consume(self, batch: Mapping[str, Any], remaining_ms: Callable[[], int]) -> dict[str, Any]:
        """Every record of `batch` in turn; the partial batch response."""
        raw = batch.get("Records")
        if not isinstance(raw, list):
            raise InputError("An SQS batch has a Records list")
        failed: list[str] = []
        for item in raw:
            try:
                record = Record.of(item)
            except InputError:
                # Lambda never sends such a record; without a message id it cannot be answered for either.
                log.error("an SQS record without messageId, receiptHandle and body was skipped")
                continue
            if not await self._one(record, remaining_ms):
                failed.append(record.message_id)
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}

    async def _one(self, record: Record, remaining_ms: Callable[[], int]) -> bool:
        """True when the message is done with (delete it), False when it must come back."""
        try:
            message = self._messages.read(record.body)
        except InputError as exc:
            # The reason goes with the message to the dead-letter queue, not to the log: it may quote the body.
            self._observe("UnreadableMessages")
            note("unreadable message", messageId=record.message_id)
            return await self._set_aside(record, f"unreadable: {exc.text}")
        try:
            if isinstance(message, Event):
                return await self._route(record, message)  # quick: no handler runs, so no time check
            if remaining_ms() < self._budget_ms + SETTLE_MARGIN_MS:
                # No time left for a handler run: a fresh copy, visible at once, so this is no attempt.
                await self._messages.requeue(record.body, 0)
                return True
            lease = remaining_ms() / 1000 + LEASE_MARGIN_SECONDS
            settled = await self._app.deliveries.run_queued(message, lease)
            return await self._settle(record, message, settled)
        except Exception:
            # The store or the queue failed: no attempt was recorded, SQS redelivers the message.
            log.exception("message %s could not be processed; it comes back", record.message_id)
            return False

    async def _route(self, record: Record, event: Event) -> bool:
        try:
            await self._app.publisher.route(event)
        except (InputError, LimitExceeded) as exc:
            # No retry can route it (past the per-send cap since the send was accepted, a malformed event).
            self._observe("UnroutableEvents", tenant=event.tenant, eventType=event.type, eventId=event.id)
            note("unroutable event", tenant=event.tenant, eventType=event.type, eventId=event.id)
            return await self._set_aside(record, f"unroutable: {exc.text}")
        self._observe("EventsRouted", tenant=event.tenant, eventType=event.type, eventId=event.id)
        note("event routed", tenant=event.tenant, eventType=event.type, eventId=event.id)
        return True

    async def _settle(self, record: Record, delivery_id: str, settled: Settled) -> bool:
        """What becomes of the message of a delivery after `run_queued`. Logged: ids, attempt, duration; never
        the error text (it may quote the tenant's data: it is in the runs log and the dead letter)."""
        run = settled.run
        fields: dict[str, Any] = {"deliveryId": delivery_id}
        if run is not None:
            fields |= {"tenant": run.tenant, "handlerId": run.handler.handler_id, "eventType": run.event_type}
            fields |= {"attempt": run.attempt, "durationMs": run.duration_ms}
        if settled.dead:
            self._observe("DeadLetters", **fields)
            return await self._set_aside(record, (run.error if run else None) or "dead letter")
        if settled.retry_at is not None and run is not None:
            # A failed attempt: the same message comes back after the back-off (one receive per attempt).
            self._observe("DeliveryRetries", **fields)
            await self._messages.delay(record.receipt, _seconds_until(settled.retry_at))
            return False
        if settled.retry_at is not None:
            # Not due yet, or held by a live claim: a fresh copy for then, so this receive is no attempt.
            await self._messages.requeue(record.body, _seconds_until(settled.retry_at))
            return True
        if settled.unrecorded:
            return False
        if run is not None:
            self._observe("Deliveries", **fields)
        return True

    async def _set_aside(self, record: Record, reason: str) -> bool:
        try:
            await self._messages.set_aside(record.body, reason)
        except Exception:
            log.exception("message %s could not be set aside; it comes back", record.message_id)
            return False
        return True


def _seconds_until(moment: datetime) -> float:
    return max(0.0, (moment - utc_now()).total_seconds())


class SchedulesConsumer:
    """One Scheduler fire: the slot's delivery to its handler, or nothing when the entry is no longer live."""

    def __init__(self, app: App, fires: ScheduleFires, *, observe: Observe = _ignore) -> None:
        self._app = app
        self._fires = fires
        self._observe = observe

    async def fire(self, payload: Any) -> dict[str, Any]:
        try:
            due = self._fires.read(payload)
            entry, slot = due.entry, due.scheduled_time
        except InputError as exc:
            # A retry cannot make it readable: answered, logged, never retried.
            self._observe("UnreadableFires")
            note("unreadable schedule fire", reason=exc.text)
            return {"fired": False, "error": exc.text}
        event = await self._app.deliveries.fire_if_live(entry, slot)
        fields = {"tenant": entry.handler.tenant, "handlerId": entry.handler.handler_id, "schedule": entry.schedule}
        if event is None:
            self._observe("StaleFires", **fields, version=entry.handler.version)
            note("stale schedule fire", **fields, version=entry.handler.version)
            return {"fired": False, "reason": "the schedule is no longer live"}
        self._observe("ScheduleFires", **fields, eventId=event.id)
        return {"fired": True, "eventId": event.id}


class EventsRuntime(LambdaEnvironment):
    """The events function's environment: the app with its warm runner, and the consumer over it."""

    def __init__(self, app: App, loop: asyncio.Runner, consumer: EventsConsumer) -> None:
        super().__init__(app, loop)
        self.consumer = consumer

    @classmethod
    def start(cls, logger: Logger, metrics: Metrics, env: Mapping[str, str] | None = None) -> EventsRuntime:
        route_core_logs(logger)
        app = build(Settings.from_env(env))
        messages = app.adapters.queue_messages
        if messages is None:
            raise NotConfigured(EVENTS_NOT_DEPLOYED)
        loop = eventloop.runner()
        loop.run(app.start(worker=False))
        return cls(app, loop, EventsConsumer(app, messages, observe=PowertoolsObserver(metrics)))

    def handle_batch(self, batch: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """One invocation: an SQS batch in, its partial batch response out."""
        return self.run(self.consumer.consume(batch, context.get_remaining_time_in_millis))


class SchedulesRuntime(LambdaEnvironment):
    """The schedules function's environment: no runner is started, a fire only queues a delivery."""

    def __init__(self, app: App, loop: asyncio.Runner, consumer: SchedulesConsumer) -> None:
        super().__init__(app, loop)
        self.consumer = consumer

    @classmethod
    def start(cls, logger: Logger, metrics: Metrics, env: Mapping[str, str] | None = None) -> SchedulesRuntime:
        route_core_logs(logger)
        app = build(Settings.from_env(env))
        fires = app.adapters.schedule_fires
        if fires is None:
            raise NotConfigured(SCHEDULES_NOT_DEPLOYED)
        return cls(app, eventloop.runner(), SchedulesConsumer(app, fires, observe=PowertoolsObserver(metrics)))

    def handle_fire(self, payload: Any) -> dict[str, Any]:
        """One invocation: a schedule's Input in, what was fired out."""
        return self.run(self.consumer.fire(payload))


class PowertoolsObserver:
    """`observe(what, **fields)` through Powertools: a count metric named `what`. The log lines are the
    core's (`mcpdo.operations`: deliveries, retries, dead letters and fires where they happen, the rest here)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def __call__(self, what: str, **fields: Any) -> None:
        from aws_lambda_powertools.metrics import MetricUnit

        self._metrics.add_metric(name=what, unit=MetricUnit.Count, value=1)
