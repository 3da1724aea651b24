"""A fake API Gateway (HTTP API, payload v2) on loopback: each HTTP request becomes the event API Gateway
would send, the MCP function's handler answers it, and its response goes back as HTTP. Requests are served
one at a time, as one Lambda execution environment serves them.

The function is loaded from `functions/mcp/app.py` as Lambda loads it (a file, not a package), in the
gateway's own thread, so its INIT (settings, wiring, warm runners) runs there like Lambda's does.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

APP_PATH = Path(__file__).resolve().parents[2] / "functions" / "mcp" / "app.py"
EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
# The API Gateway host the samples in events/ were made for (allowed by the fake gateway too).
SAMPLE_HOST = "abc123.execute-api.us-east-1.amazonaws.com"
KEY_PLACEHOLDER = "{{MCPDO_API_KEY}}"


class LambdaContext:
    """The fields of Lambda's context object that the handler and Powertools read."""

    function_name = "mcpdo-McpFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mcpdo-McpFunction"
    memory_limit_in_mb = 1024
    log_group_name = "/aws/lambda/mcpdo-McpFunction"
    log_stream_name = "2026/12/02/[$LATEST]0"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def load_function() -> ModuleType:
    """Import `functions/mcp/app.py` under its own name, running its INIT."""
    spec = importlib.util.spec_from_file_location("mcpdo_function_mcp_app", APP_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def v2_event(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    source_ip: str = "203.0.113.9",
    base64_body: bool = False,
) -> dict[str, Any]:
    """The payload-v2 event API Gateway sends for one request (header names as the client sent them)."""
    split = urlsplit(path)
    text = base64.b64encode(body).decode() if base64_body else body.decode("utf-8", "surrogateescape")
    host = headers.get("Host") or headers.get("host") or "localhost"
    return {
        "version": "2.0",
        "routeKey": f"{method} {split.path}",
        "rawPath": split.path,
        "rawQueryString": split.query,
        "headers": dict(headers),
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "fakeapi",
            "domainName": host,
            "http": {"method": method, "path": split.path, "protocol": "HTTP/1.1", "sourceIp": source_ip},
            "requestId": str(uuid.uuid4()),
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "body": text,
        "isBase64Encoded": base64_body,
    }


def tool_call_event(key: str | None, arguments: Mapping[str, str]) -> dict[str, Any]:
    """The event of one `do` call (`arguments`: script and/or module) as API Gateway sends it, with `key`'s
    bearer or anonymous, in the current protocol generation."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "do", "arguments": dict(arguments)}}
    headers = {
        "Host": SAMPLE_HOST,
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return v2_event("POST", "/mcp", headers, json.dumps(body).encode())


@contextmanager
def running_function(env: Mapping[str, str]) -> Iterator[ModuleType]:
    """`functions/mcp/app.py` loaded (its INIT run) with `env` set, which stays set while it serves."""
    from tests.support.aws import environment

    with environment(env):
        function = load_function()
        try:
            yield function
        finally:
            function.runtime.close()


class FakeGateway:
    """The gateway's URL and the function it serves."""

    def __init__(self, server: HTTPServer, function: ModuleType) -> None:
        self.server = server
        self.function = function
        host, port = server.server_address[:2]
        self.host = f"{host!s}:{port}"
        self.url = f"http://{self.host}/mcp"

    def invoke(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """One direct invocation, as `sam local invoke` would make it."""
        with self.server.lock:  # type: ignore[attr-defined]
            result: dict[str, Any] = self.function.handler(dict(event), LambdaContext())
        return result


def _request_handler(invoke: Callable[[dict[str, Any]], dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            event = v2_event(self.command, self.path, dict(self.headers.items()), body)
            response = invoke(event)
            payload = response.get("body") or ""
            data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode()
            self.send_response(int(response["statusCode"]))
            for name, value in (response.get("headers") or {}).items():
                self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


@contextmanager
def fake_gateway(environment: Mapping[str, str]) -> Iterator[FakeGateway]:
    """Serve `functions/mcp/app.py` behind a fake gateway, its environment set as the template sets it."""
    import os

    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    ready = threading.Event()
    holder: dict[str, Any] = {}
    lock = threading.Lock()

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        with lock:
            result: dict[str, Any] = holder["function"].handler(event, LambdaContext())
        return result

    server = HTTPServer(("127.0.0.1", 0), _request_handler(invoke))
    server.lock = lock  # type: ignore[attr-defined]

    def run() -> None:
        try:
            host, port = server.server_address[:2]
            os.environ["MCPDO_ALLOWED_HOSTS"] = f"{host!s}:{port},{SAMPLE_HOST}"
            holder["function"] = load_function()
        except BaseException as exc:
            holder["error"] = exc
            ready.set()
            return
        ready.set()
        server.serve_forever(poll_interval=0.05)

    thread = threading.Thread(target=run, name="fake-api-gateway", daemon=True)
    thread.start()
    assert ready.wait(60), "the function's INIT did not finish within 60 s"
    if "error" in holder:
        raise holder["error"]
    gateway = FakeGateway(server, holder["function"])
    try:
        yield gateway
    finally:
        server.shutdown()
        thread.join(10)
        with lock:
            holder["function"].runtime.close()
        server.server_close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        os.environ.pop("MCPDO_ALLOWED_HOSTS", None)


def sample_events(api_key: str) -> dict[str, dict[str, Any]]:
    """`events/*.json` by file stem, the samples `sam local invoke` and the tests share, with `api_key` in
    place of the placeholder a user replaces with their own key."""
    return {
        path.stem: json.loads(path.read_text().replace(KEY_PLACEHOLDER, api_key))
        for path in sorted(EVENTS_DIR.glob("*.json"))
    }
