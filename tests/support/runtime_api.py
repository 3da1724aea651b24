"""A fake of Lambda's Runtime API, the extension part, on loopback: what an internal extension registers with
and asks for its next event. The test plays Lambda: it hands the extension an INVOKE event (`deliver`), and
waits for the extension to ask for the next one (`wait_for_next`), which on Lambda is what lets the
environment be frozen or take its next invocation. `invoke` runs one invocation in that order.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REGISTER_PATH = "/2020-01-01/extension/register"
NEXT_PATH = "/2020-01-01/extension/event/next"
_CLOSED = object()


class RuntimeApi:
    """The server's state: registrations, next-event requests received, events waiting to be handed out."""

    def __init__(self, refuse_registration: int | None = None) -> None:
        self.refuse_registration = refuse_registration
        self.registrations: list[tuple[str | None, dict[str, Any]]] = []
        self.identifier = str(uuid.uuid4())
        self.next_requests = 0
        self.bad_identifiers = 0
        self._events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._changed = threading.Condition()
        self.address = ""

    def environment(self) -> dict[str, str]:
        """What Lambda sets for the function's process to find this API."""
        return {"AWS_LAMBDA_RUNTIME_API": self.address}

    def deliver(self, deadline_in_s: float = 30.0, request_id: str | None = None) -> str:
        """Hand the extension an INVOKE event (it gets it on its pending or next request); its request id
        (`request_id`, as the handler's context has it, or a new one)."""
        request_id = request_id or str(uuid.uuid4())
        event = {
            "eventType": "INVOKE",
            "deadlineMs": int((time.time() + deadline_in_s) * 1000),
            "requestId": request_id,
            "invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:mcpdo-McpFunction",
        }
        self._events.put(event)
        return request_id

    def wait_for_next(self, count: int, timeout: float = 10.0) -> None:
        """Until the extension has asked for its next event `count` times in all."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.next_requests >= count, timeout):
                raise AssertionError(f"the extension asked for its next event {self.next_requests} times, not {count}")

    def invoke(
        self, handler: Callable[[dict[str, Any], Any], dict[str, Any]], event: dict[str, Any], context: Any
    ) -> tuple[dict[str, Any], float]:
        """One invocation as Lambda runs it: INVOKE to the extension (with the request id of `context`), the
        handler's answer (its seconds are returned: what the caller waits for), then the extension's request
        for its next event."""
        asked = self.next_requests
        self.deliver(request_id=context.aws_request_id)
        started = time.perf_counter()
        response = handler(event, context)
        answered = time.perf_counter() - started
        self.wait_for_next(asked + 1)
        return response, answered

    def _next(self) -> object:
        with self._changed:
            self.next_requests += 1
            self._changed.notify_all()
        return self._events.get()

    def close(self) -> None:
        for _ in range(8):  # every request still waiting for an event
            self._events.put(_CLOSED)


@contextmanager
def runtime_api(refuse_registration: int | None = None) -> Iterator[RuntimeApi]:
    """A running fake Runtime API; `refuse_registration` answers registrations with that HTTP status."""
    api = RuntimeApi(refuse_registration)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            api.registrations.append((self.headers.get("Lambda-Extension-Name"), body))
            if self.path != REGISTER_PATH or api.refuse_registration is not None:
                self._answer(api.refuse_registration or 404, {"errorMessage": "refused"})
                return
            self._answer(200, {"functionName": "mcpdo-McpFunction"}, {"Lambda-Extension-Identifier": api.identifier})

        def do_GET(self) -> None:
            if self.path != NEXT_PATH:
                self._answer(404, {})
                return
            if self.headers.get("Lambda-Extension-Identifier") != api.identifier:
                api.bad_identifiers += 1
                self._answer(403, {"errorMessage": "unknown extension"})
                return
            event = api._next()
            if event is _CLOSED:
                self._answer(500, {"errorMessage": "shutting down"})
                return
            self._answer(200, event)

        def _answer(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            # The process that asked may be gone (a cold-start probe that ended while its request waited).
            with suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    api.address = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-runtime-api", daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.close()
        server.shutdown()
        server.server_close()
