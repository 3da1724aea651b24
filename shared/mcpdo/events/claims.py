"""The rules of a delivery store that no backend may spell differently: what claiming a delivery in a given
state does, the texts of interrupted attempts and refused replays, and the JSON form of event data. The
SQLite, memory and DynamoDB stores keep state; these decide.
"""

from __future__ import annotations

import json
from typing import Literal

from mcpdo.errors import Conflict, InputError, NotFound
from mcpdo.ports import Event

# The text of an interrupted attempt, around its number (in SQL the number is the `attempts` column).
INTERRUPTED = ("Attempt ", " was interrupted (its worker stopped)")
NO_RETRY_LEFT = " and no retry is left"

ClaimVerdict = Literal["take", "wait", "bury", "skip"]


def claim_verdict(
    status: str, attempts: int, next_attempt_at: int, lease_until: int | None, now: int, max_attempts: int
) -> tuple[ClaimVerdict, int | None]:
    """What claiming one delivery in this state at `now` does, and for "wait" when it is due (epoch ms).

    take: pending and due, or running with an expired lease (its claimant is gone) and attempts left; wait:
    pending but not yet due, or running under an unexpired lease; bury: interrupted with no attempt left (it
    becomes a dead letter); skip: nothing to do (done or dead).
    """
    if status == "pending":
        return ("take", None) if next_attempt_at <= now else ("wait", next_attempt_at)
    if status == "running" and lease_until is not None:
        if lease_until > now:
            return "wait", lease_until
        return ("take", None) if attempts < max_attempts else ("bury", None)
    return "skip", None


def interrupted_error(attempts: int, *, last: bool = False) -> str:
    """The error recorded for attempt `attempts` when its lease expired (`last`: no attempt is left)."""
    return f"{INTERRUPTED[0]}{attempts}{INTERRUPTED[1]}{NO_RETRY_LEFT if last else ''}"


def replay_refused(delivery_id: str, status: str | None) -> NotFound | Conflict:
    """Why a delivery in `status` (None: unknown) cannot be replayed."""
    if status is None:
        return NotFound(f"Dead letter {delivery_id} not found")
    return Conflict(f"Delivery {delivery_id} is {status}, not dead-lettered: only dead letters can be replayed")


def event_json(event: Event) -> str:
    """The JSON text an event's data is stored as; InputError when it is not JSON."""
    try:
        return json.dumps(event.data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"Event {event.type} data must be JSON-serializable: {exc}") from exc
