"""Routing: which handlers a published event goes to, decided once here for every deployment.

- Every live subscription of the event's tenant whose pattern matches gets one delivery.
- `*` and `*.verb` subscriptions observe; exact and `Type.*` subscriptions take delivery over. An event type
  with a built-in handler (`Email.send`: the mailer) goes to it only when no subscription takes it over.
- Storms: an event deeper than the hop limit (handlers sending events that trigger handlers...) is stored
  with its deliveries written as dead letters, never run; replaying one runs that hop once. An event that
  would make more deliveries than the per-send cap is refused whole (LimitExceeded, nothing stored).

Without an EventTransport the publishing process routes the event itself, and the deliveries are stored
before `send` resolves. With one (EventBridge), `send` resolves once the transport holds the event, and the
consumer of the transport calls `route`.

Where no worker polls the delivery store (AWS), a DeliveryDispatch (a queue) is handed every delivery the
core makes pending: after routing, after a schedule fire, after a replay. Routing an event again dispatches
its pending deliveries again, so a crash between storing them and dispatching them loses nothing (a claim
hands each out once, whatever the number of messages naming it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from mcpdo.errors import InputError, LimitExceeded
from mcpdo.ids import check_id
from mcpdo.patterns import check_event_type
from mcpdo.ports import (
    DeliveryDispatch,
    DeliveryStore,
    Event,
    EventTransport,
    HandlerRef,
    Subscription,
    SubscriptionSync,
)

# Event storms: how deep a chain of handler-sent events is still delivered, and how many deliveries one
# `send` may fan out to (settings MCPDO_EVENT_HOP_LIMIT, MCPDO_MAX_DELIVERIES_PER_SEND).
HOP_LIMIT = 8
MAX_DELIVERIES_PER_SEND = 100

MAILER_MODULE = "builtin:mailer"
"""`module_id` of the built-in mailer's handler: `Email.send` events with no user handler go to it."""

BUILTIN_HANDLERS: Mapping[str, str] = {"Email.send": MAILER_MODULE}


def mailer_handler(tenant: str) -> HandlerRef:
    """The handler reference of the built-in mailer in `tenant`."""
    return HandlerRef(tenant=tenant, module_id=MAILER_MODULE, version=0, index=0)


class Publisher:
    """Publishes events and routes them to deliveries; listeners (the local worker) hear of new work."""

    def __init__(
        self,
        subscriptions: SubscriptionSync,
        deliveries: DeliveryStore,
        *,
        transport: EventTransport | None = None,
        dispatch: DeliveryDispatch | None = None,
        hop_limit: int = HOP_LIMIT,
        max_deliveries_per_send: int = MAX_DELIVERIES_PER_SEND,
    ) -> None:
        if hop_limit < 0:
            raise ValueError("hop_limit must not be negative")
        if max_deliveries_per_send < 1:
            raise ValueError("max_deliveries_per_send must be at least 1")
        self._subscriptions = subscriptions
        self._deliveries = deliveries
        self._transport = transport
        self._dispatch = dispatch
        self._hop_limit = hop_limit
        self._max_deliveries = max_deliveries_per_send
        self._listeners: list[Callable[[], None]] = []

    def listen(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every accepted publish (added after the worker exists: wiring has no cycle)."""
        self._listeners.append(listener)

    async def publish(self, event: Event) -> None:
        """Accept `event` durably: routed here, or handed to the transport; an already-known id is a no-op."""
        check_event(event)
        if self._transport is None:
            await self.route(event)
        else:
            # Refuse an over-wide send before the transport holds it: once accepted it cannot be taken back.
            self.plan(event, await self._subscriptions.matching(event.tenant, event.type))
            await self._transport.publish(event)
        for listener in self._listeners:
            listener()

    async def route(self, event: Event) -> bool:
        """Store `event` with one delivery per handler it goes to; False when it was already routed."""
        check_event(event)
        handlers = self.plan(event, await self._subscriptions.matching(event.tenant, event.type))
        added = await self._deliveries.add(event, handlers, dead_error=self.too_deep(event))
        await self.dispatch_pending(event.id)
        return added

    async def enqueue(self, event: Event, handler: HandlerRef) -> bool:
        """Store `event` with one delivery to exactly `handler` (a schedule fire); once per event id."""
        check_event(event)
        if handler.tenant != event.tenant:
            raise InputError(
                f"Cannot deliver an event of tenant {event.tenant!r} to a handler of tenant {handler.tenant!r}"
            )
        added = await self._deliveries.add(event, [handler], dead_error=self.too_deep(event))
        await self.dispatch_pending(event.id)
        for listener in self._listeners:
            listener()
        return added

    async def dispatch_pending(self, event_id: str) -> None:
        """Hand the pending deliveries of one stored event to the dispatch (none without one: a worker polls)."""
        if self._dispatch is None:
            return
        pending = [d for d in await self._deliveries.deliveries(event_id) if d.status == "pending"]
        if pending:
            await self._dispatch.dispatch(pending)

    def plan(self, event: Event, subscriptions: Sequence[Subscription]) -> list[HandlerRef]:
        """The handlers `event` goes to, given the live subscriptions matching it (see the module docstring)."""
        handlers = [sub.handler for sub in subscriptions if sub.handler.tenant == event.tenant]
        taken_over = any(not sub.pattern.startswith("*") for sub in subscriptions)
        builtin = BUILTIN_HANDLERS.get(event.type)
        if builtin is not None and not taken_over:
            handlers.append(HandlerRef(event.tenant, builtin, 0, 0))
        if len(handlers) > self._max_deliveries:
            raise LimitExceeded(
                "deliveries",
                (
                    f"send({event.type}) would make {len(handlers)} deliveries, past the limit of "
                    f"{self._max_deliveries} per send (MCPDO_MAX_DELIVERIES_PER_SEND); nothing was published. "
                    f"Narrow the on() patterns that match {event.type}"
                ),
            )
        return handlers

    def too_deep(self, event: Event) -> str | None:
        """The dead-letter reason of an event past the hop limit, or None when it may be delivered."""
        if event.depth <= self._hop_limit:
            return None
        return (
            f"Event chain too deep: {event.type} reached depth {event.depth}, past the hop limit of "
            f"{self._hop_limit} (MCPDO_EVENT_HOP_LIMIT); handlers that send events in a loop stop here"
        )


def check_event(event: Event) -> None:
    """Refuse an event whose id, type or depth no backend should store (its data is checked where encoded)."""
    check_id(event.id, "event id")
    check_event_type(event.type)
    if isinstance(event.depth, bool) or not isinstance(event.depth, int) or event.depth < 0:
        raise InputError(f"Event {event.type} depth must be a non-negative integer, got {event.depth!r}")
