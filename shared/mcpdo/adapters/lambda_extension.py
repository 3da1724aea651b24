"""Work after the answer on Lambda: an internal extension (the Extensions API, from a thread of this process).

A Lambda function answers when its handler returns, so whatever the handler still awaits, the caller waits
for too. An extension registered for INVOKE events holds the execution environment after the answer: Lambda
neither freezes it nor hands it the next invocation until the extension asks for its next event. Work
deferred here (the audit entry's table write) therefore runs once the caller has its answer and before
anything else happens in the environment: a freeze does not lose it and it never overlaps the next
invocation. The invocation's billed duration still includes it.

The handler runs inside `invocation()`; when it is done, its deferred work is handed to the extension
thread, which (told of the invocation by its INVOKE event) runs it on the environment's event loop, idle then,
and asks for its next event. Without a Runtime API (tests, a plain process) or when registration is refused,
there is no extension and the work is done before the answer, as everywhere else.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

NAME = "mcpdo-after-answer"
REGISTER_PATH = "/2020-01-01/extension/register"
NEXT_PATH = "/2020-01-01/extension/event/next"
# How long the extension waits for an answer when an INVOKE event carries no deadline (Lambda's longest).
LONGEST_INVOCATION_S = 900.0
# What deferred work leaves of the invocation's time, for the extension to ask for its next event in time.
DEADLINE_MARGIN_S = 0.5

Work = Callable[[], Coroutine[Any, Any, None]]
RunOnLoop = Callable[[Coroutine[Any, Any, None]], object]


class LambdaAfterAnswer:
    """The AfterAnswer port on Lambda: work deferred during an invocation runs after its answer."""

    def __init__(self, api: str, identifier: str, run: RunOnLoop) -> None:
        self._api = api
        self._identifier = identifier
        self._run = run
        self._pending: list[Work] = []
        # Each answered invocation's request id (None when unknown) and its deferred work.
        self._answers: queue.SimpleQueue[tuple[str | None, list[Work]]] = queue.SimpleQueue()
        # Held while the handler runs and while deferred work runs: the two never share the loop at once.
        self._loop_in_use = threading.Lock()
        self._alive = True
        self._thread = threading.Thread(target=self._serve, name=NAME, daemon=True)

    @classmethod
    def register(cls, env: Mapping[str, str], run: RunOnLoop) -> LambdaAfterAnswer | None:
        """Register with the Runtime API that `env` names (AWS_LAMBDA_RUNTIME_API, set by Lambda) during
        INIT and start the extension's thread; None, with a warning, where there is none or it refuses."""
        api = env.get("AWS_LAMBDA_RUNTIME_API")
        if not api:
            return None
        body = json.dumps({"events": ["INVOKE"]}).encode()
        try:
            status, identifier, _ = _call(api, "POST", REGISTER_PATH, {"Lambda-Extension-Name": NAME}, body)
        except (OSError, http.client.HTTPException) as exc:
            log.warning("extension registration failed (%s): audit entries are written before each answer", exc)
            return None
        if status != 200 or not identifier:
            log.warning(
                "extension registration refused (HTTP %s): audit entries are written before each answer", status
            )
            return None
        extension = cls(api, identifier, run)
        extension._thread.start()
        return extension

    @property
    def alive(self) -> bool:
        """False once the Runtime API is gone (the environment is going away): work is then done at once."""
        return self._alive

    def defer(self, work: Work) -> bool:
        if not self._alive:
            return False
        self._pending.append(work)
        return True

    @contextmanager
    def invocation(self, request_id: str | None = None) -> Iterator[None]:
        """Around one invocation's handler (`request_id`: Lambda's, from its context): its deferred work is
        handed over when it is done."""
        with self._loop_in_use:
            try:
                yield
            finally:
                works, self._pending = self._pending, []
                if self._alive:
                    self._answers.put((request_id, works))
                else:
                    self._run_all(works, "after its last answer")

    def _serve(self) -> None:
        try:
            while True:
                try:
                    event = self._next_event()
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    # No Runtime API any more: the environment is going away.
                    log.warning("extension stopped: its next event could not be read (%s)", exc)
                    return
                if event.get("eventType") == "INVOKE":
                    try:
                        self._after(event)
                    except Exception:
                        # Whatever went wrong, the extension must ask for its next event: until it does,
                        # Lambda holds every later invocation.
                        log.exception("extension: invocation %s", event.get("requestId"))
        finally:
            self._alive = False  # later work is done before the answer
            self._run_left()

    def _run_left(self) -> None:
        """Work already handed over when the extension stops: run now rather than lost (every hand-over
        happens under the lock, so none can come after this)."""
        with self._loop_in_use:
            left: list[Work] = []
            while True:
                try:
                    left += self._answers.get_nowait()[1]
                except queue.Empty:
                    break
            self._run_all(left, "as the extension stopped")

    def _next_event(self) -> dict[str, Any]:
        status, _, body = _call(self._api, "GET", NEXT_PATH, {"Lambda-Extension-Identifier": self._identifier})
        if status != 200:
            raise ValueError(f"HTTP {status}")
        event = json.loads(body)
        if not isinstance(event, dict):
            raise ValueError("the event is not an object")
        return event

    def _after(self, event: Mapping[str, Any]) -> None:
        """Wait for this invocation's answer, then run its deferred work, and that of any earlier answer that
        came after its own invocation's deadline (always under the lock, so never beside a handler)."""
        wanted = event.get("requestId")
        deadline = time.time() + _seconds_left(event)
        works: list[Work] = []
        answered = False
        while not answered:
            try:
                request_id, handed = self._answers.get(timeout=max(0.0, deadline - time.time()))
            except queue.Empty:
                log.warning("invocation %s gave no answer before its deadline", wanted)
                break
            works += handed
            answered = request_id is None or request_id == wanted
        with self._loop_in_use:
            self._run_all(works, f"after the answer of invocation {wanted}", deadline)

    def _run_all(self, works: list[Work], when: str, deadline: float | None = None) -> None:
        for work in works:
            try:
                self._run(_within(work, deadline))
            except (Exception, asyncio.CancelledError):
                log.exception("work %s failed", when)


async def _within(work: Work, deadline: float | None) -> None:
    """`work`, given up (TimeoutError) a margin before the epoch-seconds `deadline`, so that the extension
    still asks for its next event in time."""
    if deadline is None:
        await work()
        return
    await asyncio.wait_for(work(), max(0.0, deadline - time.time() - DEADLINE_MARGIN_S))


def _seconds_left(event: Mapping[str, Any]) -> float:
    """Seconds to the invocation's deadline, at most Lambda's longest invocation (a deadline further away, or
    none, is read as that: a timeout past what the platform's waits take would fail where it is used)."""
    deadline = event.get("deadlineMs")
    if not isinstance(deadline, int | float):
        return LONGEST_INVOCATION_S
    return min(LONGEST_INVOCATION_S, max(0.0, deadline / 1000 - time.time()))


def _call(
    api: str, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, str | None, bytes]:
    """One request to the Runtime API (no timeout: a next-event request waits for as long as Lambda wants):
    the status, the extension identifier header and the body."""
    connection = http.client.HTTPConnection(api)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Lambda-Extension-Identifier"), response.read()
    finally:
        connection.close()
