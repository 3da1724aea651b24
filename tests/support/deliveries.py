"""Events published straight to a built app's bus, and the `Seen` records its test handlers write."""

from __future__ import annotations

from mcpdo.bootstrap import App
from mcpdo.ids import ulid
from mcpdo.ports import Event
from mcpdo.query import parse_list_options
from mcpdo.timeparse import format_iso, utc_now


async def publish(app: App, event_type: str, n: int, tenant: str = "default") -> Event:
    """Publish `event_type` with data `{ n }` in `tenant`, as a script's `send` would."""
    event_id = f"evt_{ulid()}"
    event = Event(
        id=event_id,
        type=event_type,
        data={"n": n},
        source="test",
        time=format_iso(utc_now()),
        tenant=tenant,
        correlation_id=event_id,
    )
    await app.publisher.publish(event)
    return event


async def seen(app: App, tenant: str = "default") -> list[tuple[str, int]]:
    """The (by, n) of every `Seen` record in `tenant`, sorted."""
    rows = await app.adapters.store.list(tenant, "Seen", parse_list_options({}))
    return sorted((row["by"], row["n"]) for row in rows)
