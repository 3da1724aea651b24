"""`api.proxy` keeps the deployment's credentials host-side: the service receives them, and nothing the script
sees (its result, an error text) nor any log line or exception chain carries them, even when the service
echoes them back. Paths that could leave the base URL never reach the network; anonymous callers are refused
before any request. Real parts throughout: the httpx web client, the file secret store, and a loopback HTTP
server that records every request."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from mcpdo.adapters.file_secrets import FileSecrets
from mcpdo.adapters.httpx_web import HttpxWebClient
from mcpdo.errors import (
    AuthenticationRequired,
    FetchError,
    HttpStatusError,
    InputError,
    McpdoError,
    NotConfigured,
    PermissionDenied,
)
from mcpdo.identity import Identity
from mcpdo.netguard import Allowlist
from mcpdo.sdk.proxy import ProxyApi
from mcpdo.services import ServiceRegistry

pytestmark = pytest.mark.anyio

SECRET = "sk_test_4eC39HqLyjWDarjtT1zdp7dc/+="
BASIC_SECRET = "svc-user:pa55/w+rd="
MEMBER = Identity.for_roles(id="key_1", tenant="acme", auth_type="apiKey", roles=("member",))
READER = Identity.for_roles(id="key_2", tenant="acme", auth_type="apiKey", roles=("reader",))


@dataclass
class Upstream:
    """A loopback service that records requests; some routes echo the credential back, in several spellings."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)


def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str, **headers: str) -> None:
    handler.send_response(status)
    handler.send_header("content-type", content_type)
    handler.send_header("content-length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    web = Upstream()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            headers = {name.lower(): value for name, value in self.headers.items()}
            web.received.append({"method": self.command, "path": self.path, "headers": headers, "body": body})
            credential = headers.get("authorization") or headers.get("x-api-key") or ""
            route = self.path.split("?", 1)[0].removeprefix("/api")
            if route == "/echo":
                echoed = {"headers": headers, "body": body, "path": self.path}
                _answer(self, 200, json.dumps(echoed).encode(), "application/json")
            elif route == "/echo-escaped":
                # JSON that escapes "/" and every non-letter, as some servers write it.
                text = "".join(f"\\u{ord(c):04x}" if not c.isalnum() else c for c in credential)
                _answer(self, 200, ('{"seen": "' + text + '"}').encode(), "application/json")
            elif route == "/echo-text":
                _answer(self, 200, f"you sent {credential} and {credential.partition(' ')[2]}".encode(), "text/plain")
            elif route == "/echo-decoded":
                token = credential.partition(" ")[2] or credential
                decoded = base64.b64decode(token).decode() if credential.startswith("Basic ") else token
                _answer(self, 200, json.dumps({"user": decoded}).encode(), "application/json")
            elif route == "/unauthorized":
                answer = {"error": {"message": f"Invalid API Key provided: {credential}", "raw": credential}}
                _answer(self, 401, json.dumps(answer).encode(), "application/json")
            elif route == "/forbidden-text":
                _answer(self, 403, f"denied for {credential}".encode(), "text/plain")
            elif route == "/redirect":
                _answer(self, 302, b"", "text/plain", location=self.headers.get("x-target", "http://127.0.0.1:9/"))
            else:
                _answer(self, 200, json.dumps({"ok": True, "path": self.path}).encode(), "application/json")

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

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


@pytest.fixture
def second_upstream() -> Iterator[Upstream]:
    """Another host, where a redirect would lead: it must never see a request."""
    with _recording_server() as web:
        yield web


class _recording_server:
    def __enter__(self) -> Upstream:
        web = Upstream()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                web.received.append({"path": self.path, "headers": dict(self.headers.items())})
                _answer(self, 200, b"{}", "application/json")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        web.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return web

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _registry(base: str) -> ServiceRegistry:
    text = f"""
acme:   {{ baseUrl: "{base}/api", auth: bearer, secret: ACME_KEY }}
legacy: {{ baseUrl: "{base}/api", auth: basic, secret: LEGACY_CREDENTIALS }}
keyed:  {{ baseUrl: "{base}/api", auth: "header:X-Api-Key", secret: KEYED_KEY }}
nokey:  {{ baseUrl: "{base}/api", auth: bearer, secret: NOT_SET_ANYWHERE }}
stripe: {{ baseUrl: "{base}/api" }}
shippo: {{ baseUrl: "{base}/api" }}
"""
    return ServiceRegistry.parse(text, "services.yaml")


SECRETS = {
    "ACME_KEY": SECRET,
    "LEGACY_CREDENTIALS": BASIC_SECRET,
    "KEYED_KEY": SECRET,
    "STRIPE_SECRET_KEY": SECRET,
    "SHIPPO_API_KEY": SECRET,
}


@pytest.fixture
async def web(anyio_backend: str) -> Any:
    client = HttpxWebClient(
        allow=Allowlist.parse(""),
        connect_timeout_s=2.0,
        read_timeout_s=5.0,
        max_response_bytes=1024 * 1024,
        user_agent="mcpdo-test",
    )
    try:
        yield client
    finally:
        await client.close()


def _proxy(upstream: Upstream, web: Any, identity: Identity = MEMBER) -> ProxyApi:
    return ProxyApi(identity, _registry(upstream.url), FileSecrets(None, SECRETS), web)


def _forms() -> list[str]:
    """The credential in every spelling that must never be seen."""
    basic = base64.b64encode(BASIC_SECRET.encode()).decode()
    return [SECRET, BASIC_SECRET, basic, SECRET.replace("/", "\\/"), "4eC39HqLyjWDarjtT1zdp7dc"]


def _assert_clean(*texts: str) -> None:
    for text in texts:
        for form in _forms():
            assert form not in text, f"{form!r} leaked into {text!r}"


def _chain(exc: BaseException) -> str:
    """Everything a traceback of `exc` could print: each exception in its chain, str and repr."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(getattr(current, "args", ()))]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@pytest.fixture(autouse=True)
def _all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    _assert_clean(caplog.text)


# -- the credential reaches the service, in its scheme -----------------------------------------------


@pytest.mark.parametrize(
    ("service", "header", "value"),
    [
        ("acme", "authorization", f"Bearer {SECRET}"),
        ("stripe", "authorization", f"Bearer {SECRET}"),
        ("shippo", "authorization", f"ShippoToken {SECRET}"),
        ("keyed", "x-api-key", SECRET),
        ("legacy", "authorization", "Basic " + base64.b64encode(BASIC_SECRET.encode()).decode()),
    ],
)
async def test_the_service_receives_its_credential_in_its_own_scheme(
    upstream: Upstream, web: Any, service: str, header: str, value: str
) -> None:
    result = await _proxy(upstream, web).proxy([service, "/v1/customers?limit=3"])
    [request] = upstream.received
    assert request["headers"][header] == value
    assert request["path"] == "/api/v1/customers?limit=3"
    assert result == {"ok": True, "path": "/api/v1/customers?limit=3"}


async def test_an_object_body_is_json_and_stripe_v1_gets_a_form(upstream: Upstream, web: Any) -> None:
    proxy = _proxy(upstream, web)
    await proxy.proxy(["acme", "/charges", {"method": "POST", "body": {"amount": 2999, "currency": "usd"}}])
    await proxy.proxy(
        ["stripe", "/v1/charges", {"method": "post", "body": {"amount": 2999, "metadata": {"order": "o_1"}}}]
    )
    await proxy.proxy(["shippo", "/shipments", {"method": "POST", "body": "raw text", "headers": {"X-Trace": "t1"}}])
    acme, stripe, shippo = upstream.received
    assert (acme["method"], acme["headers"]["content-type"]) == ("POST", "application/json")
    assert json.loads(acme["body"]) == {"amount": 2999, "currency": "usd"}
    assert stripe["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert stripe["body"] == "amount=2999&metadata%5Border%5D=o_1"
    assert (shippo["body"], shippo["headers"]["x-trace"]) == ("raw text", "t1")
    assert "content-type" not in shippo["headers"]


# -- nothing the script sees carries it ---------------------------------------------------------------


@pytest.mark.parametrize("service", ["acme", "keyed", "legacy", "shippo"])
@pytest.mark.parametrize("route", ["/echo", "/echo-escaped", "/echo-text", "/echo-decoded"])
async def test_a_service_that_echoes_the_credential_has_it_redacted_in_the_result(
    upstream: Upstream, web: Any, service: str, route: str
) -> None:
    result = await _proxy(upstream, web).proxy([service, route])
    shown = json.dumps(result, ensure_ascii=False)
    _assert_clean(shown, str(result))
    assert "[redacted]" in shown
    assert upstream.received  # the request was made, with the credential


@pytest.mark.parametrize("service", ["acme", "keyed", "legacy", "stripe"])
@pytest.mark.parametrize("route", ["/unauthorized", "/forbidden-text"])
async def test_an_error_status_echoing_the_credential_never_shows_it(
    upstream: Upstream, web: Any, service: str, route: str
) -> None:
    with pytest.raises(HttpStatusError) as caught:
        await _proxy(upstream, web).proxy([service, route])
    assert caught.value.status in (401, 403)
    assert caught.value.message.startswith(f"HTTP {caught.value.status} from {service}{route}")
    assert "[redacted]" in caught.value.message
    _assert_clean(caught.value.text, _chain(caught.value))


async def test_a_redirect_is_not_followed_so_the_credential_never_reaches_another_host(
    upstream: Upstream, second_upstream: Upstream, web: Any
) -> None:
    with pytest.raises(McpdoError) as caught:
        await _proxy(upstream, web).proxy(["acme", "/redirect", {"headers": {"X-Target": second_upstream.url + "/x"}}])
    assert second_upstream.received == []
    _assert_clean(caught.value.text, _chain(caught.value))


async def test_an_unreachable_service_fails_without_the_credential_in_the_error_or_its_chain(web: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    proxy = ProxyApi(MEMBER, _registry(closed), FileSecrets(None, SECRETS), web)
    with pytest.raises(FetchError) as caught:
        await proxy.proxy(["acme", "/v1/customers"])
    _assert_clean(caught.value.text, _chain(caught.value))


async def test_a_missing_secret_is_named_and_nothing_is_sent(upstream: Upstream, web: Any) -> None:
    with pytest.raises(NotConfigured) as caught:
        await _proxy(upstream, web).proxy(["nokey", "/v1/customers"])
    assert "service 'nokey' needs the secret 'NOT_SET_ANYWHERE'" in caught.value.message
    assert "MCPDO_SECRETS_FILE" in caught.value.message
    assert upstream.received == []


# -- refusals before any request --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/../secret",
        "/a/../../b",
        "/%2e%2e/admin",
        "/..%2f..%2fadmin",
        "/..;/admin",
        "https://evil.example/x",
        "//evil.example/x",
        "\\\\evil.example",
        "/x\r\nX-Injected: 1",
    ],
)
async def test_a_path_that_could_leave_the_base_url_never_reaches_the_network(
    upstream: Upstream, web: Any, path: str
) -> None:
    with pytest.raises(InputError) as caught:
        await _proxy(upstream, web).proxy(["acme", path])
    assert caught.value.message.startswith("api.proxy(): path ")
    assert upstream.received == []


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"headers": {"Authorization": "Bearer mine"}}, "carries the 'acme' credential"),
        ({"headers": {"authorization": "x"}}, "carries the 'acme' credential"),
        ({"headers": {"Host": "evil.example"}}, "frames the request"),
        ({"headers": {"X-A": "1\r\nX-B: 2"}}, "no line breaks"),
        ({"headers": {"X-A": 1}}, "must be a string"),
        ({"headers": {"Bad Name": "1"}}, "not a valid HTTP header name"),
        ({"headers": {f"X-{n}": "1" for n in range(51)}}, "at most 50 headers"),
        ({"method": "TRACE"}, "method must be one of"),
        ({"body": 42}, "body must be an object, an array or a string"),
        ({"timeout": 1}, "unknown option 'timeout'"),
    ],
)
async def test_bad_options_are_refused_before_any_request(
    upstream: Upstream, web: Any, options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InputError) as caught:
        await _proxy(upstream, web).proxy(["acme", "/v1/x", options])
    assert problem in caught.value.message
    assert upstream.received == []


async def test_the_script_cannot_set_the_header_of_a_header_credential(upstream: Upstream, web: Any) -> None:
    with pytest.raises(InputError, match="carries the 'keyed' credential"):
        await _proxy(upstream, web).proxy(["keyed", "/v1/x", {"headers": {"x-api-key": "mine"}}])
    assert upstream.received == []


async def test_anonymous_callers_are_refused_before_any_request(upstream: Upstream, web: Any) -> None:
    with pytest.raises(AuthenticationRequired):
        await _proxy(upstream, web, Identity.anonymous()).proxy(["acme", "/v1/customers"])
    with pytest.raises(AuthenticationRequired):
        await _proxy(upstream, web, Identity.anonymous()).proxy(["no-such-service", "/../x"])
    assert upstream.received == []


async def test_callers_without_the_grant_are_refused_and_learn_nothing_of_the_configured_services(
    upstream: Upstream, web: Any
) -> None:
    with pytest.raises(PermissionDenied) as caught:
        await _proxy(upstream, web, READER).proxy(["no-such-service", "/v1/customers"])
    assert caught.value.message == "Permission denied: proxy no-such-service"
    assert upstream.received == []


async def test_an_unknown_service_lists_the_configured_ones(upstream: Upstream, web: Any) -> None:
    with pytest.raises(NotConfigured) as caught:
        await _proxy(upstream, web).proxy(["stripes", "/v1/customers"])
    assert caught.value.message.startswith(
        "api.proxy(): unknown service 'stripes'; configured services: acme, legacy, keyed, nokey, stripe, shippo"
    )
    assert upstream.received == []


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["acme"], "needs at least 2 argument(s)"),
        (["acme", "/x", {}, 1], "takes at most 3 argument(s)"),
        ([42, "/x"], "service must be a service's name"),
        (["stripe\n", "/x"], "service must be a service's name"),
        (["acme", 42], "path must be a non-empty string"),
        (["acme", "/x", "GET"], "options must be an object"),
    ],
)
async def test_bad_arguments_are_refused_before_any_request(
    upstream: Upstream, web: Any, args: list[Any], problem: str
) -> None:
    with pytest.raises(InputError) as caught:
        await _proxy(upstream, web).proxy(args)
    assert problem in caught.value.message
    assert upstream.received == []
