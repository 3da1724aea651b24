"""EventTransport on EventBridge: each accepted event is one `PutEvents` entry on the app's custom bus, and
`event_from_eventbridge` turns what the bus delivers (through a rule to a queue) back into the Event.

Entry format (`prefix` is `source_prefix`, "mcpdo" unless configured):

- `Source`: `<prefix>.tenant/<encoded tenant>`. EventBridge allows 256 characters of `A-Z a-z 0-9 . - _ /`
  there, so the tenant is encoded: ASCII letters, digits, `-` and `.` stay as they are; every other
  character becomes `_` and two upper-case hex digits per UTF-8 byte (`acme_corp` -> `acme_5Fcorp`,
  `é` -> `_C3_A9`). The escape always starts with `_`, so distinct tenants give distinct sources. A tenant
  whose encoding does not fit in 256 characters gets `<prefix>.tenant-sha256/<hex digest of its UTF-8>`.
  The bus rule matches `{"source": [{"prefix": "<prefix>."}]}`: both forms. The Source is for rules and
  logs; the tenant itself travels in the detail, and the consumer checks that the two agree.
- `DetailType`: the event type (`Order.created`); EventBridge allows 128 characters there, as the core's
  type rule does (`patterns.MAX_TYPE_LENGTH`).
- `Detail`: JSON of the whole event: `Event.to_json()` (id, type, data, source, time, tenant,
  correlationId) plus `depth`, so the consumer rebuilds the same Event (the envelope's own `time` has only
  second precision; the detail's is the event's).
- `Time`: the event's time.

An entry is at most 256 KB (EventBridge counts the UTF-8 bytes of Source, DetailType and Detail, plus 14
for Time): a larger one is refused before any call, with LimitExceeded. `publish` returns once the bus has
accepted the entry. Throttling of the call itself is retried by botocore (standard retry mode); an entry
the bus refused (`FailedEntryCount` > 0) is ours to retry: with back-off when its error code is one AWS
documents as retryable, at once a StoreError naming EventBridge and the code otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from mcpdo.adapters.aws_calls import ATTEMPTS, BACKOFF_SECONDS, attempts, aws_call
from mcpdo.errors import InputError, LimitExceeded, StoreError
from mcpdo.events.routing import check_event
from mcpdo.ids import check_id
from mcpdo.inputs import check_name, show
from mcpdo.ports import Event
from mcpdo.timeparse import from_epoch_ms, parse_iso_ms

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef, PutEventsResponseTypeDef

DEFAULT_SOURCE_PREFIX = "mcpdo"
MAX_ENTRY_BYTES = 256 * 1024
MAX_SOURCE_LENGTH = 256
TIME_BYTES = 14  # what a `Time` adds to an entry's size, as EventBridge counts it
# The entry error codes AWS documents as retryable; every other code (AccessDenied, MalformedDetail, ...) is not.
RETRYABLE_ENTRY_ERRORS = frozenset({"InternalFailure", "ThrottlingException"})
# A prefix is dot-separated words; `aws.` sources are reserved for AWS services.
_PREFIX = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
_MAX_PREFIX_LENGTH = 64
_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")
_DETAIL_FIELDS = ("id", "type", "data", "source", "time", "tenant", "correlationId", "depth")
_MALFORMED = "Malformed EventBridge event: "

log = logging.getLogger(__name__)

# --- the transport -----------------------------------------------------------------------------------


class EventBridgeTransport:
    """Publishes each event as one entry on the custom bus `bus_name` (see the module docstring)."""

    def __init__(
        self,
        events_client: EventBridgeClient,
        *,
        bus_name: str,
        source_prefix: str = DEFAULT_SOURCE_PREFIX,
        attempts: int = ATTEMPTS,
        backoff_seconds: float = BACKOFF_SECONDS,
    ) -> None:
        if not bus_name:
            raise ValueError("bus_name must name the event bus")
        check_source_prefix(source_prefix)
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._client = events_client
        self._bus = bus_name
        self._prefix = source_prefix
        self._attempts = attempts
        self._backoff = backoff_seconds

    async def publish(self, event: Event) -> None:
        """Put `event` on the bus; returns once the bus accepted it, retrying an entry it refused."""
        entry = self.entry(event)
        code: str | None = None
        async for attempt in attempts(self._attempts, self._backoff):
            result = await aws_call("EventBridge", self._client.put_events, Entries=[entry])
            code = _refusal(result)
            if code is None:
                return
            log.warning("EventBridge refused event %s (attempt %d): %s", event.id, attempt + 1, code)
            if code not in RETRYABLE_ENTRY_ERRORS:
                break
        raise StoreError(f"EventBridge did not accept event {event.id} ({event.type}): {code}")

    def entry(self, event: Event) -> PutEventsRequestEntryTypeDef:
        """The PutEvents entry of `event`; InputError or LimitExceeded when it cannot be one."""
        check_event(event)  # the type fits a DetailType: the core's type rule is EventBridge's 128 characters
        moment = parse_iso_ms(event.time) if isinstance(event.time, str) else None
        if moment is None:
            raise InputError(f"Event {event.type} time must be an ISO-8601 instant, got {show(event.time)}")
        entry: PutEventsRequestEntryTypeDef = {
            "EventBusName": self._bus,
            "Source": source_of(event.tenant, self._prefix),
            "DetailType": event.type,
            "Detail": _detail_json(event),
            "Time": from_epoch_ms(moment),
        }
        _check_size(event, entry)
        return entry

    async def close(self) -> None:
        """Release the client's connections."""
        self._client.close()


def check_source_prefix(prefix: str) -> str:
    """`prefix` if it can start an EventBridge Source (dot-separated words, not `aws`); else ValueError."""
    if not _PREFIX.fullmatch(prefix) or len(prefix) > _MAX_PREFIX_LENGTH or prefix.split(".")[0] == "aws":
        raise ValueError(
            f"source_prefix must be dot-separated words of letters, digits and '-' (at most "
            f"{_MAX_PREFIX_LENGTH} characters, not starting with 'aws'), got {prefix!r}"
        )
    return prefix


def source_of(tenant: str, prefix: str = DEFAULT_SOURCE_PREFIX) -> str:
    """The Source of `tenant`'s events: `<prefix>.tenant/<encoded tenant>` (see the module docstring)."""
    encoded = "".join(char if char in _KEPT else _escape(char) for char in tenant)
    source = f"{prefix}.tenant/{encoded}"
    if len(source) <= MAX_SOURCE_LENGTH:
        return source
    digest = hashlib.sha256(tenant.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{prefix}.tenant-sha256/{digest}"


def _escape(char: str) -> str:
    # surrogatepass: a lone surrogate still gets a (distinct) encoding instead of an exception.
    return "".join(f"_{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def event_detail(event: Event) -> dict[str, Any]:
    """The `Detail` object of `event`: everything needed to rebuild it."""
    return {**event.to_json(), "depth": event.depth}


def _detail_json(event: Event) -> str:
    try:
        text = json.dumps(event_detail(event), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        text.encode()
    except (TypeError, ValueError, RecursionError) as exc:
        # ValueError covers NaN/Infinity and (as UnicodeEncodeError) strings that are not valid Unicode.
        raise InputError(f"Event {event.type} data must be JSON with valid Unicode strings: {exc}") from exc
    return text


def _check_size(event: Event, entry: PutEventsRequestEntryTypeDef) -> None:
    size = TIME_BYTES + sum(len(part.encode()) for part in (entry["Source"], entry["DetailType"], entry["Detail"]))
    if size > MAX_ENTRY_BYTES:
        raise LimitExceeded(
            "event size",
            f"Event {event.type} is {size} bytes as an EventBridge entry: EventBridge events hold at most "
            f"256 KB ({MAX_ENTRY_BYTES} bytes, the data as JSON with the event's envelope); send a smaller "
            "payload, e.g. a record id instead of the record",
        )


def _refusal(result: PutEventsResponseTypeDef) -> str | None:
    """The error code of the refused entry, or None when the bus accepted it."""
    if not result.get("FailedEntryCount"):
        return None
    entries = result.get("Entries", [])
    code = entries[0].get("ErrorCode") if entries else None
    return code or "unknown error"


# --- the consumer side ---------------------------------------------------------------------------------


def event_from_eventbridge(envelope: object, *, source_prefix: str = DEFAULT_SOURCE_PREFIX) -> Event:
    """The Event an EventBridge envelope carries (`{"version", "id", "detail-type", "source", "time",
    "detail"}`, as a rule's SQS target delivers it in the message body, JSON-decoded).

    It comes from a queue, so nothing in it is trusted: anything malformed, or a detail that disagrees with
    the envelope's `detail-type` or `source`, is an InputError saying what is wrong.
    """
    try:
        return _event_of(envelope, source_prefix)
    except InputError as exc:
        raise InputError(_MALFORMED + exc.message) from None


def _event_of(envelope: object, source_prefix: str) -> Event:
    if not isinstance(envelope, dict):
        raise InputError(f"the envelope must be an object, got {show(envelope)}")
    detail = envelope.get("detail")
    if not isinstance(detail, dict):
        raise InputError(f"'detail' must be an object, got {show(detail)}")
    event = _event_of_detail(detail)
    if envelope.get("detail-type") != event.type:
        raise InputError(
            f"'detail-type' {show(envelope.get('detail-type'))} is not the detail's type {show(event.type)}"
        )
    if envelope.get("source") != source_of(event.tenant, source_prefix):
        raise InputError(f"'source' {show(envelope.get('source'))} is not the source of the detail's tenant")
    return event


def _event_of_detail(detail: dict[Any, Any]) -> Event:
    missing = [name for name in _DETAIL_FIELDS if name not in detail]
    if missing:
        raise InputError(f"'detail' lacks {', '.join(missing)}")
    texts = {name: _text(detail, name) for name in ("source", "time", "tenant")}
    if parse_iso_ms(texts["time"]) is None:
        raise InputError(f"'detail.time' must be an ISO-8601 instant, got {show(texts['time'])}")
    check_name("'detail.tenant'", texts["tenant"])
    event = Event(
        id=detail["id"],
        type=detail["type"],
        data=detail["data"],
        source=texts["source"],
        time=texts["time"],
        tenant=texts["tenant"],
        correlation_id=check_id(detail["correlationId"], "'detail.correlationId'"),
        depth=detail["depth"],
    )
    check_event(event)  # id, type and depth, by the rule every published event meets
    return event


def _text(detail: dict[Any, Any], name: str) -> str:
    value = detail[name]
    if not isinstance(value, str) or not value:
        raise InputError(f"'detail.{name}' must be a non-empty string, got {show(value)}")
    return value
