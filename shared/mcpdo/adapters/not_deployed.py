"""The event ports of an AWS deployment whose settings leave a part out (a stack without the bus, the
schedule group or a mail sender, or the CLI run without their settings): every write says so by name,
naming the settings that turn it on; every read is empty.

A script that calls `send`, or registers `every`, gets a clear error instead of an event that nothing would
ever deliver; `on()` subscriptions are still stored (SubscriptionSync is the state table's), so they take
effect once the events part is.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mcpdo.errors import NotConfigured
from mcpdo.ports import Delivery, Event, ScheduleEntry, StoredModule
from mcpdo.settings import EVENTS_NOT_DEPLOYED as EVENTS
from mcpdo.settings import MAIL_NOT_DEPLOYED as MAIL
from mcpdo.settings import SCHEDULES_NOT_DEPLOYED as SCHEDULES


class TransportNotDeployed:
    """EventTransport that refuses every event."""

    async def publish(self, event: Event) -> None:
        raise NotConfigured(EVENTS)


class DispatchNotDeployed:
    """DeliveryDispatch that refuses: nothing would ever run what it was handed."""

    async def dispatch(self, deliveries: Sequence[Delivery]) -> None:
        raise NotConfigured(EVENTS)

    async def close(self) -> None:
        return None


class SchedulesNotDeployed:
    """ScheduleSync that stores nothing: a module without `every()` registers, one with it is refused."""

    async def sync(self, module: StoredModule, schedules: builtins.list[ScheduleEntry]) -> None:
        if schedules:
            raise NotConfigured(SCHEDULES)

    async def list(self, tenant: str | None = None) -> builtins.list[ScheduleEntry]:
        return []

    async def next_fire(self, entry: ScheduleEntry) -> datetime | None:
        return None

    async def is_live(self, entry: ScheduleEntry) -> bool:
        return False

    async def close(self) -> None:
        return None


class MailerNotDeployed:
    """Mailer that refuses to send."""

    async def send(self, message: dict[str, Any], idempotency_key: str, *, tenant: str) -> None:
        raise NotConfigured(MAIL)

    async def list(self, limit: int = 100, *, tenant: str | None = None) -> builtins.list[dict[str, Any]]:
        return []

    async def close(self) -> None:
        return None
