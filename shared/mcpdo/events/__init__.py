"""The event system's rules, over the event ports: routing a published event to its handlers (`Publisher`),
and running one delivery or one schedule slot (`Deliveries`). The local worker loop and the cloud functions
are entrypoints that call these; adapters only store and move what these decide."""

from mcpdo.events.delivery import (
    SCHEDULE_EVENT_TYPE,
    Deliveries,
    HandlerFailed,
    HandlerOutcome,
    Invoke,
    RetryPolicy,
    Settled,
    schedule_event,
)
from mcpdo.events.routing import (
    HOP_LIMIT,
    MAILER_MODULE,
    MAX_DELIVERIES_PER_SEND,
    Publisher,
    mailer_handler,
)

__all__ = [
    "HOP_LIMIT",
    "MAILER_MODULE",
    "MAX_DELIVERIES_PER_SEND",
    "SCHEDULE_EVENT_TYPE",
    "Deliveries",
    "HandlerFailed",
    "HandlerOutcome",
    "Invoke",
    "Publisher",
    "RetryPolicy",
    "Settled",
    "mailer_handler",
    "schedule_event",
]
