"""A JSON web service on loopback that records what it was sent: the external APIs the reference's examples
call (`analytics.acme.com`, `charts.acme.com`, ...), which a test points at it and the deployment allow-lists."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Raw:
    """A reply that is not JSON: its content type, bytes and any extra headers."""

    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeWeb:
    url: str  # http://127.0.0.1:<port>
    # path -> (status, JSON body or Raw); unknown paths answer 404 with a text body.
    routes: dict[str, tuple[int, Any]] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    # A delay per answer, and the most requests it was answering at once (to see a client's concurrency).
    delay_s: float = 0.0
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host_port(self) -> str:
        return self.url.removeprefix("http://")


@contextmanager
def fake_web() -> Iterator[FakeWeb]:
    web = FakeWeb(url="")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            headers = {k.lower(): v for k, v in self.headers.items()}
            with web.lock:
                web.received.append({"method": self.command, "path": self.path, "body": body, "headers": headers})
                web.in_flight += 1
                web.most_in_flight = max(web.most_in_flight, web.in_flight)
            if web.delay_s:
                time.sleep(web.delay_s)
            with web.lock:
                web.in_flight -= 1
            status, answer = web.routes.get(self.path.split("?", 1)[0], (404, Raw("text/plain", b"no such page")))
            reply = answer if isinstance(answer, Raw) else Raw("application/json", json.dumps(answer).encode())
            data = reply.body
            self.send_response(status)
            self.send_header("content-type", reply.content_type)
            self.send_header("content-length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    web.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield web
    finally:
        server.shutdown()
        server.server_close()
