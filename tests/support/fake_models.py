"""An OpenAI-compatible model server on loopback, answering at once: the client edge for the openai adapter,
the tool end to end, and the bench (its latency is zero, so what is measured is ours).

It answers chat completions with an object shaped by the requested schema (either `response_format` or a
forced tool call): canned values by schema name where a test gives them, otherwise each property filled by
its JSON type. Tests can queue failures (429, 500), turn `response_format` off (as servers without it
answer), make the model refuse, and read every request it got.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EMBEDDING = [0.25, -0.5, 0.125, 1.0]


@dataclass
class FakeModelServer:
    url: str  # the base URL, ending in /v1
    canned: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[int] = field(default_factory=list)
    response_format: bool = True
    refuse: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    # A delay per answer, and the most requests it was answering at once (to see a client's concurrency).
    delay_s: float = 0.0
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.failures:
            status = self.failures.pop(0)
            return status, {"error": {"message": f"fake failure {status}"}}
        if path.endswith("/embeddings"):
            return 200, {"data": [{"embedding": EMBEDDING}], "usage": {"prompt_tokens": 3, "total_tokens": 3}}
        if not self.response_format and "response_format" in body:
            return 400, {"error": {"message": "Unrecognized request argument supplied: response_format"}}
        usage = {"prompt_tokens": 11, "completion_tokens": 7}
        if self.refuse:
            message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
            return 200, {"choices": [{"message": message, "finish_reason": "stop"}], "usage": usage}
        name, schema = _requested(body)
        value = self.canned.get(name) or fill(schema)
        if "tools" in body:
            call = {"type": "function", "function": {"name": name, "arguments": json.dumps(value)}}
            message = {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", **call}]}
        else:
            message = {"role": "assistant", "content": json.dumps(value)}
        return 200, {"choices": [{"message": message, "finish_reason": "stop"}], "usage": usage}


def _requested(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if "tools" in body:
        function = body["tools"][0]["function"]
        return function["name"], function["parameters"]
    spec = body["response_format"]["json_schema"]
    return spec["name"], spec["schema"]


def fill(schema: dict[str, Any]) -> dict[str, Any]:
    """An object with every property of `schema`, each a value of its JSON type."""
    samples: dict[str, Any] = {"string": "sample", "number": 1.5, "integer": 2, "boolean": True}
    value: dict[str, Any] = {}
    for name, spec in (schema.get("properties") or {}).items():
        kind = spec.get("type", "string")
        if kind == "array":
            value[name] = [f"{name} 1"]
        else:
            value[name] = f"{name} text" if kind == "string" else samples.get(kind, "sample")
    return value


@contextmanager
def fake_model_server() -> Iterator[FakeModelServer]:
    """A FakeModelServer on a free loopback port, for the duration of the block."""
    fake = FakeModelServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            with fake.lock:
                fake.requests.append({"path": self.path, **body})
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                fake.in_flight += 1
                fake.most_in_flight = max(fake.most_in_flight, fake.in_flight)
                status, answer = fake.answer(self.path, body)
            if fake.delay_s:
                time.sleep(fake.delay_s)
            with fake.lock:
                fake.in_flight -= 1
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
