"""Who takes the next free sandbox runner: per-caller caps, the anonymous share, and the order of waiters.

Pure bookkeeping (no I/O, no clock): the pool asks `choose` whenever a runner is free or a request
arrives, and reports each execution's end with `finish`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal

CallerKind = Literal["key", "anonymous", "local"]
# Why a waiting request is not running: its caller's cap, the anonymous share, or no free runner.
BusyReason = Literal["caller", "anonymous", "runners"]
# The longest a request waits for a runner before it gets a "sandbox is busy" error (MCPDO_SANDBOX_WAIT_MS).
DEFAULT_WAIT_MS = 10_000


@dataclass(frozen=True)
class Caller:
    """Whom an execution counts against: an authenticated key, an anonymous source address, or a trusted
    local caller (code that drives the sandbox directly; it has no cap)."""

    kind: CallerKind
    id: str

    @classmethod
    def key(cls, id: str) -> Caller:
        return cls("key", id)

    @classmethod
    def anonymous(cls, source: str) -> Caller:
        return cls("anonymous", source)

    @classmethod
    def local(cls) -> Caller:
        return cls("local", "local")

    @property
    def is_anonymous(self) -> bool:
        return self.kind == "anonymous"


@dataclass(frozen=True)
class Caps:
    """How many executions may run at once: per key, per anonymous source, and for all anonymous together."""

    per_key: int = 4
    per_anonymous: int = 1
    anonymous_runners: int = 1

    def __post_init__(self) -> None:
        for name in ("per_key", "per_anonymous", "anonymous_runners"):
            if getattr(self, name) < 1:
                raise ValueError(f"Caps.{name} is {getattr(self, name)}: it must be at least 1")

    def within(self, runners: int) -> Caps:
        """These caps on a pool of at most `runners`: no key and no anonymous crowd may hold every runner
        (unless the pool has only one)."""
        room = max(1, runners - 1)
        return Caps(
            per_key=min(self.per_key, room),
            per_anonymous=min(self.per_anonymous, room),
            anonymous_runners=min(self.anonymous_runners, room),
        )

    def cap(self, caller: Caller) -> int | None:
        """The caller's own cap (None: uncapped)."""
        if caller.kind == "key":
            return self.per_key
        if caller.kind == "anonymous":
            return self.per_anonymous
        return None


@dataclass(eq=False)
class Ticket:
    """One request waiting for a runner."""

    caller: Caller
    reuse_key: str | None = None
    seq: int = field(default=0)


class Admission:
    """The running counts and the waiting requests of one pool.

    Order when a runner frees up: authenticated (and local) callers before anonymous ones, then the caller
    running the fewest executions, then arrival; a request past its caller's cap, or an anonymous one while
    the anonymous share is full, waits in place and keeps its turn.
    """

    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self._running: dict[Caller, int] = {}
        self._waiting: list[Ticket] = []
        self._seq = itertools.count()

    @property
    def waiting(self) -> tuple[Ticket, ...]:
        return tuple(self._waiting)

    @property
    def anonymous_running(self) -> int:
        """How many executions all anonymous callers run now together."""
        return sum(count for caller, count in self._running.items() if caller.is_anonymous)

    def running(self, caller: Caller) -> int:
        """How many executions `caller` runs now."""
        return self._running.get(caller, 0)

    def enqueue(self, caller: Caller, reuse_key: str | None = None) -> Ticket:
        """A new request joins the queue (`choose` decides when it runs)."""
        ticket = Ticket(caller, reuse_key, next(self._seq))
        self._waiting.append(ticket)
        return ticket

    def withdraw(self, ticket: Ticket) -> None:
        """A waiting request gave up (timed out or cancelled); a ticket already chosen is left alone."""
        if ticket in self._waiting:
            self._waiting.remove(ticket)

    def choose(self, free: int) -> list[Ticket]:
        """Up to `free` waiting requests that run now, best first; each counts as running until `finish`."""
        chosen: list[Ticket] = []
        while len(chosen) < free:
            eligible = [t for t in self._waiting if self.blocked(t.caller) is None]
            if not eligible:
                break
            best = min(eligible, key=lambda t: (t.caller.is_anonymous, self.running(t.caller), t.seq))
            self._waiting.remove(best)
            self._start(best.caller)
            chosen.append(best)
        return chosen

    def finish(self, caller: Caller) -> None:
        """One execution of `caller` ended (or a chosen request was not used)."""
        left = self._running.get(caller, 0) - 1
        if left > 0:
            self._running[caller] = left
        else:
            self._running.pop(caller, None)

    def blocked(self, caller: Caller) -> BusyReason | None:
        """Why `caller` may not start another execution now (None: it may, given a free runner)."""
        cap = self.caps.cap(caller)
        if cap is not None and self.running(caller) >= cap:
            return "caller"
        if caller.is_anonymous and self.anonymous_running >= self.caps.anonymous_runners:
            return "anonymous"
        return None

    def demand(self) -> int:
        """How many waiting requests could run now if there were runners enough (what growing would serve)."""
        waiting: dict[Caller, int] = {}
        for ticket in self._waiting:
            waiting[ticket.caller] = waiting.get(ticket.caller, 0) + 1
        keyed = anonymous = 0
        for caller, count in waiting.items():
            cap = self.caps.cap(caller)
            room = count if cap is None else max(0, min(count, cap - self.running(caller)))
            if caller.is_anonymous:
                anonymous += room
            else:
                keyed += room
        return keyed + min(anonymous, max(0, self.caps.anonymous_runners - self.anonymous_running))

    def _start(self, caller: Caller) -> None:
        self._running[caller] = self._running.get(caller, 0) + 1
