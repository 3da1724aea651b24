"""The event ports of a deployment that has no event system yet (the AWS stack before its EventBridge,
Scheduler, queues and mail are deployed): every write says so by name, every read is empty.

A script that calls `send`, or registers `every`, gets a clear error instead of an event that nothing would
ever deliver; `on()` subscriptions are still stored (SubscriptionSync is deployed), so they take effect once
the events part is.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mcpdo.errors import NotConfigured, NotFound
from mcpdo.ports import Delivery, Event, HandlerRef, Run, ScheduleEntry, StoredModule

EVENTS = "send() needs the events deployment (EventBridge and its queues), which this stack does not include yet"
SCHEDULES = "every() needs the schedules deployment (EventBridge Scheduler), which this stack does not include yet"
MAIL = "$.Email.send needs a mailer, which this stack does not include yet"


class TransportNotDeployed:
    """EventTransport that refuses every event."""

    async def publish(self, event: Event) -> None:
        raise NotConfigured(EVENTS)


class SchedulesNotDeployed:
    """ScheduleSync that stores nothing: a module without `every()` registers, one with it is refused."""

    async def sync(self, module: StoredModule, schedules: builtins.list[ScheduleEntry]) -> None:
        if schedules:
            raise NotConfigured(SCHEDULES)

    async def list(self, tenant: str | None = None) -> builtins.list[ScheduleEntry]:
        return []

    async def next_fire(self, entry: ScheduleEntry) -> datetime | None:
        return None

    async def close(self) -> None:
        return None


class DeliveriesNotDeployed:
    """DeliveryStore with nothing in it (no event is ever accepted)."""

    async def add(self, event: Event, handlers: Sequence[HandlerRef], *, dead_error: str | None = None) -> bool:
        raise NotConfigured(EVENTS)

    async def deliveries(self, event_id: str) -> builtins.list[Delivery]:
        return []

    async def complete(self, delivery: Delivery) -> None:
        raise NotConfigured(EVENTS)

    async def retry(self, delivery: Delivery, error: str, at: datetime) -> None:
        raise NotConfigured(EVENTS)

    async def bury(self, delivery: Delivery, error: str) -> None:
        raise NotConfigured(EVENTS)

    async def dead_letters(self, tenant: str | None = None) -> builtins.list[Delivery]:
        return []

    async def dead_letter(self, delivery_id: str) -> Delivery | None:
        return None

    async def replay(self, delivery_id: str, version: int | None = None) -> None:
        raise NotFound(f"Dead letter {delivery_id} not found")

    async def purge(self, older_than: datetime) -> int:
        return 0

    async def close(self) -> None:
        return None


class RunsNotDeployed:
    """RunLog with no runs (no handler runs without the events deployment)."""

    async def record_run(self, run: Run) -> None:
        raise NotConfigured(EVENTS)

    async def runs(self, tenant: str | None = None, limit: int = 100) -> builtins.list[Run]:
        return []

    async def close(self) -> None:
        return None


class MailerNotDeployed:
    """Mailer that refuses to send."""

    async def send(self, message: dict[str, Any], idempotency_key: str) -> None:
        raise NotConfigured(MAIL)

    async def list(self, limit: int = 100) -> builtins.list[dict[str, Any]]:
        return []

    async def close(self) -> None:
        return None
