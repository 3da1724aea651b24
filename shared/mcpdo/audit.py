"""The audit trail: one ExecutionRecord per execution (who, tenant, what kind, a hash of the code, outcome,
duration and SDK call counts), never the script's data; kept for a retention period, listed by admins."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from mcpdo.errors import InputError, McpdoError, PermissionDenied
from mcpdo.identity import Identity
from mcpdo.ids import new_id
from mcpdo.inputs import DEFAULT_LIMIT, MAX_LIMIT, integer_option, show
from mcpdo.ports import AfterAnswer, AuditLog, ExecutionRecord
from mcpdo.timeparse import format_iso, utc_now

log = logging.getLogger(__name__)

# The type under which admins read the audit trail with `db.list`; nobody writes it through `db`.
AUDIT_TYPE = "Execution"
# Local stores drop old entries themselves, checked at most this often (DynamoDB expires them by TTL).
PURGE_EVERY_SECONDS = 3600.0


def code_hash(code: str) -> str:
    """What the trail keeps of the code: enough to tell two runs apart, nothing of what it says."""
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


class Auditor:
    """Records executions; an entry that cannot be written is logged, and the execution's answer stands.

    With `after_answer` (Lambda's), the entry is written once the caller has its answer, still before the
    process serves anything else; without it, before the answer."""

    def __init__(
        self,
        log_: AuditLog,
        retention: timedelta,
        *,
        after_answer: AfterAnswer | None = None,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log_
        self._retention = retention
        self._after_answer = after_answer
        self._clock = clock
        self._monotonic = monotonic
        self._next_purge = monotonic()

    async def record(
        self,
        identity: Identity,
        *,
        kind: str,
        code: str,
        started: datetime,
        error: BaseException | None,
        calls: Counter[str],
    ) -> None:
        duration = self._clock() - started
        entry = ExecutionRecord(
            id=new_id("Execution"),
            tenant=identity.tenant,
            caller=identity.id or "anonymous",
            auth_type=identity.auth_type,
            kind=kind,
            script_hash=code_hash(code),
            started_at=format_iso(started),
            duration_ms=max(0, round(duration.total_seconds() * 1000)),
            outcome="ok" if error is None else "error",
            error_kind=None if error is None else _kind(error),
            calls=tuple(sorted(calls.items())),
        )
        if self._after_answer is not None and self._after_answer.defer(lambda: self._write(entry)):
            return
        await self._write(entry)

    async def _write(self, entry: ExecutionRecord) -> None:
        try:
            await self._log.record(entry)
            await self._purge_now_and_then()
        except Exception:
            log.exception("cannot record execution %s in the audit log", entry.id)

    async def _purge_now_and_then(self) -> None:
        if self._monotonic() < self._next_purge:
            return
        self._next_purge = self._monotonic() + PURGE_EVERY_SECONDS
        await self._log.purge(format_iso(self._clock() - self._retention))


class AuditReader:
    """`db.list('Execution')`: the caller's tenant's trail, for callers granted `audit` (admins)."""

    def __init__(self, log_: AuditLog) -> None:
        self._log = log_

    async def list(self, identity: Identity, options: dict[str, Any]) -> list[dict[str, Any]]:
        if identity.is_anonymous or not identity.can("audit", AUDIT_TYPE):
            raise PermissionDenied("list", AUDIT_TYPE)
        unknown = sorted(set(options) - {"limit", "before"})
        if unknown:
            raise InputError(
                f"db.list('{AUDIT_TYPE}') takes {{ limit, before }} (newest first; `before` an ISO instant), "
                f"not {', '.join(unknown)}"
            )
        # The bound of every listing a script makes (db.list), so no caller loads a whole trail at once.
        limit = integer_option("limit", options.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT)
        before = options.get("before")
        if before is not None and not isinstance(before, str):
            raise InputError(f"db.list('{AUDIT_TYPE}'): before must be an ISO instant, got {show(before)}")
        entries = await self._log.list(identity.tenant, limit, before)
        return [{"$type": AUDIT_TYPE, **entry.to_json()} for entry in entries]


def _kind(error: BaseException) -> str:
    return type(error).__name__ if isinstance(error, McpdoError) else "InternalError"
