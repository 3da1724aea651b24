"""The host side of `send`, `on` and `every`, in the three situations code runs in.

- a script: `on`/`every` apply to this execution only (the result warns); `send` publishes durably and
  also runs the script's own matching handlers before it resolves (combined execution);
- a module being registered: `on`/`every` are collected to become the module's live subscriptions;
- a handler of a stored module: registrations are already live, so `on`/`every` do nothing (the runtime
  does not even ask the host); before the handler runs, the host checks that its owner may still receive
  the event (`authorize_delivery`). Events it sends get ids derived from the delivery, so a re-run after a
  crash cannot publish them twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mcpdo.errors import InputError
from mcpdo.events.delivery import SCHEDULE_EVENT_TYPE
from mcpdo.identity import Identity
from mcpdo.ids import ulid
from mcpdo.patterns import candidates, check_event_type, matches, validate_pattern
from mcpdo.ports import Event
from mcpdo.schedules import parse_schedule
from mcpdo.sdk.args import arity, describe
from mcpdo.sdk.calls import SDK_ACTIONS
from mcpdo.sdk.policy import authorize
from mcpdo.timeparse import format_iso, utc_now

Mode = Literal["script", "register", "handler"]

LOCAL_ONLY_WARNING = (
    "on()/every() in a script apply to this execution only; nothing was persisted. "
    "Register them in a module to keep them."
)


@dataclass
class Registrations:
    """What `on` and `every` declared during one execution, by handler index."""

    handlers: list[tuple[str, int]] = field(default_factory=list)
    schedules: list[tuple[str, int]] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.handlers or self.schedules)


Publisher = Callable[[Event], Awaitable[None]]


@dataclass(frozen=True)
class EventContext:
    """Where the code runs: its mode, the event source name, and for handlers the delivery being run
    (`parent` is the event that triggered the handler; events the handler sends are one hop deeper)."""

    mode: Mode
    source: str
    parent: Event | None = None
    delivery_key: str | None = None


class EventsApi:
    """`send`, `on`, `every` for one execution of one caller."""

    def __init__(self, identity: Identity, context: EventContext, publish: Publisher) -> None:
        self._identity = identity
        self._context = context
        self._publish = publish
        self._sent = 0
        self.registrations = Registrations()

    async def send(self, args: list[Any]) -> Any:
        kind, data = arity("send", args, 1, 2)
        event_type = event_type_of("send", kind)
        authorize(self._identity, "send", event_type)
        event = self._new_event(event_type, data)
        await self._publish(event)
        reply: dict[str, Any] = {"id": event.id}
        local = [index for pattern, index in self.registrations.handlers if matches(pattern, event_type)]
        if self._context.mode == "script" and local:
            reply.update(runLocal=local, event=event.to_json())
        return reply

    async def on(self, args: list[Any]) -> Any:
        pattern, index = arity("on", args, 2, 2)
        pattern = validate_pattern(
            _text("on", "the event must be a $ event like $.Order.created or a pattern", pattern)
        )
        authorize(self._identity, SDK_ACTIONS["on"], pattern)
        self._register(self.registrations.handlers, pattern, index)
        return None

    async def every(self, args: list[Any]) -> Any:
        schedule, index = arity("every", args, 2, 2)
        parse_schedule(_text("every", "the schedule must be a string like '0 9 * * *' or '5m'", schedule))
        authorize(self._identity, SDK_ACTIONS["every"], "*")
        self._register(self.registrations.schedules, schedule, index)
        return None

    def _register(self, into: list[tuple[str, int]], spec: str, index: Any) -> None:
        # A stored module's handler re-runs its module's top level: those registrations are already live.
        if self._context.mode != "handler":
            into.append((spec, _index(index)))

    @property
    def warnings(self) -> tuple[str, ...]:
        if self._context.mode == "script" and self.registrations.any:
            return (LOCAL_ONLY_WARNING,)
        return ()

    def _new_event(self, event_type: str, data: Any) -> Event:
        self._sent += 1
        parent = self._context.parent
        if self._context.delivery_key is not None:
            # Deterministic per (delivery, n-th send): publishing is idempotent by id, so a handler re-run
            # after a crash re-sends the same events instead of new copies.
            digest = hashlib.sha256(f"{self._context.delivery_key}/{self._sent}".encode()).hexdigest()[:26]
            event_id = f"evt_{digest}"
        else:
            event_id = f"evt_{ulid()}"
        # One hop deeper than the event that triggered the handler: routing stops chains past the hop limit.
        return Event(
            id=event_id,
            type=event_type,
            data=data,
            source=self._context.source,
            time=format_iso(utc_now()),
            tenant=self._identity.tenant,
            correlation_id=parent.correlation_id if parent else event_id,
            depth=parent.depth + 1 if parent else 0,
        )


def authorize_delivery(identity: Identity, event_type: str) -> None:
    """A handler of `identity`'s runs for an event only while `identity` may still receive it: a schedule fire
    needs the `schedule` grant `every` needs; any other event a `subscribe` grant for a pattern that matches
    it (`*`, the type itself, `Order.*`, `*.created`), whatever pattern the module registered with. Decided
    from the grants and the event alone: nothing the module's code says at delivery time counts."""
    if event_type == SCHEDULE_EVENT_TYPE:
        authorize(identity, SDK_ACTIONS["every"], "*")
        return
    action = SDK_ACTIONS["on"]
    if identity.is_anonymous or not any(identity.can(action, pattern) for pattern in candidates(event_type)):
        authorize(identity, action, event_type)  # refuses, saying why: an anonymous owner, or no grant covers it


def event_type_of(call: str, value: Any) -> str:
    """A concrete event type such as 'Order.created' (what `$.Order.created` turns into), other than the
    ones only the deployment sends (a schedule fire: its dead letters replay to the schedule's handler)."""
    try:
        event_type = check_event_type(value)
    except InputError:
        raise InputError(
            f"{call}(): the event must be a type like $.Order.created ('Order.created'), got {describe(value)}"
        ) from None
    if event_type == SCHEDULE_EVENT_TYPE:
        raise InputError(
            f"{call}(): {SCHEDULE_EVENT_TYPE} is sent by the scheduler when an every() fires, not by scripts"
        )
    return event_type


def _text(call: str, expectation: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InputError(f"{call}(): {expectation}, got {describe(value)}")
    return value


def _index(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InputError("on()/every(): internal handler index is missing")
    return value
