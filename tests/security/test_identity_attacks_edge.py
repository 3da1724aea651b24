"""The front doors' checks as a cross-site page, an anonymous crowd and a proxy-spoofing client meet them,
in-process (no server process): the local `Edge` (Host, Origin, Content-Type, X-Forwarded-For) and the
Lambda front door (the same order on API Gateway's events), with a stub tool that says who it ran as.

Each test either shows a weakness (it asserts the safe behaviour and fails while the weakness is there) or
shows that an attack is already defended, checking that nothing of another caller moved.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from mcpdo.adapters.memory import MemoryKeyStore
from mcpdo.auth import Authenticator
from mcpdo.identity import Identity
from mcpdo.ratelimit import RateLimits
from mcpdo.server.http import Edge
from mcpdo.server.lambda_http import LambdaFrontDoor
from mcpdo.settings import AuthSettings
from mcpdo.timeparse import utc_now
from mcpdo.tool import ToolResult
from starlette.requests import Request

from tests.support.gateway import v2_event

pytestmark = pytest.mark.anyio

PORT = 8787
LOOPBACK = frozenset({f"127.0.0.1:{PORT}", f"localhost:{PORT}", f"[::1]:{PORT}"})
API_HOST = "abc123.execute-api.us-east-1.amazonaws.com"
CALL = json.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "do", "arguments": {"script": "1"}}}
).encode()
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}


def request(headers: list[tuple[str, str]], method: str = "POST", client: str = "127.0.0.1") -> Request:
    scope = {
        "type": "http",
        "method": method,
        "path": "/mcp",
        "headers": [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers],
        "client": (client, 50000),
    }
    return Request(scope)


def status(edge: Edge, headers: list[tuple[str, str]], method: str = "POST") -> int:
    refusal = edge.refusal(request(headers, method))
    return 200 if refusal is None else refusal.status_code


# -- the local edge: Host and Origin ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        f"http://127.0.0.1:{PORT}.evil.example",
        f"http://127.0.0.1:{PORT}/",
        f"http://user:pw@127.0.0.1:{PORT}",
        f"http://127.0.0.1:{PORT}@evil.example",
        f"http://127.0.0.1:{PORT}, http://evil.example",
        "http://127.0.0.1",
        f"http://127.0.0.1:{PORT + 1}",
        f"ws://127.0.0.1:{PORT}",
        f"http://127.0.0.1.:{PORT}",
        f"http://127.000.000.001:{PORT}",
        f"http://2130706433:{PORT}",
        "",
    ],
)
@pytest.mark.parametrize("method", ["POST", "OPTIONS", "GET"])
def test_cross_site_origins_are_refused_on_every_method(origin: str, method: str) -> None:
    """Attack: a web page (or a sandboxed iframe: Origin `null`) posting to the loopback server under an Origin
    that only resembles the server's. Defended: 403 before anything else (and before the quota)."""
    edge = Edge(allowed_hosts=LOOPBACK)
    headers = [("Host", f"127.0.0.1:{PORT}"), ("Origin", origin), ("Content-Type", "application/json")]
    assert status(edge, headers, method) == 403


@pytest.mark.parametrize(
    "host",
    [
        f"localhost.:{PORT}",
        f"127.0.0.1:{PORT}.evil.example",
        "127.0.0.1",
        f"127.0.0.1:{PORT} ",
        f"evil.example:{PORT}",
        f"127.0.0.1:0{PORT}",
        f"2130706433:{PORT}",
        f"[::ffff:127.0.0.1]:{PORT}",
        "",
    ],
)
def test_rebinding_host_spellings_are_refused(host: str) -> None:
    """Attack: DNS rebinding under a Host spelt like a loopback name (trailing dot, decimal, mapped IPv6,
    another port spelling). Defended: 421."""
    assert status(Edge(allowed_hosts=LOOPBACK), [("Host", host), ("Content-Type", "application/json")]) == 421


def test_the_servers_own_origin_in_any_case_passes() -> None:
    """The safe spellings (browsers lower-case the origin anyway) still pass: the check is not a deny-all."""
    edge = Edge(allowed_hosts=LOOPBACK)
    for origin in (f"http://127.0.0.1:{PORT}", f"HTTP://LOCALHOST:{PORT}", f"http://[::1]:{PORT}"):
        headers = [("Host", f"LOCALHOST:{PORT}"), ("Origin", origin), ("Content-Type", "application/json")]
        assert status(edge, headers) == 200


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json-seq",
        "application/jsonx",
        "text/plain; application/json",
        "application/json5",
        "",
    ],
)
def test_non_json_content_types_are_refused_locally(content_type: str) -> None:
    """Attack: the CORS-simple content types a page may send without a preflight, and near-misses of
    `application/json`. Defended on the local server: 400."""
    assert status(Edge(allowed_hosts=LOOPBACK), [("Host", f"127.0.0.1:{PORT}"), ("Content-Type", content_type)]) == 400


# -- X-Forwarded-For --------------------------------------------------------------------------------------


def source(edge: Edge, peer: str, *lines: str) -> str:
    return edge.source(request([("X-Forwarded-For", line) for line in lines], client=peer).scope)


def test_without_a_trusted_proxy_no_forwarded_header_is_read() -> None:
    """Attack: spoofed X-Forwarded-For in every shape, to get a fresh anonymous bucket. Defended: the peer."""
    edge = Edge(allowed_hosts=LOOPBACK)
    for lines in (("203.0.113.9",), ("203.0.113.9, 198.51.100.1",), ("2001:db8::1",), ("a", "203.0.113.9")):
        assert source(edge, "127.0.0.1", *lines) == "127.0.0.1"


def test_behind_a_trusted_proxy_client_written_hops_are_never_believed() -> None:
    """Attack: a client behind the trusted proxy writes hops itself (garbage, `unknown`, IPv6, many hops,
    several header lines, spaces, an address inside the trusted network) hoping the server reads one of them.
    Defended: the server reads the hop the proxy appended (the right-most untrusted one)."""
    edge = Edge(allowed_hosts=None, proxies=(ipaddress.ip_network("10.0.0.0/8"),))
    real = "198.51.100.7"
    cases = [
        (f"203.0.113.1, {real}",),
        (f"unknown, garbage, , {real}",),
        (f"2001:db8::1,{real}",),
        (", ".join(f"203.0.113.{n}" for n in range(200)) + f", {real}",),
        ("203.0.113.1", f"{real}"),
        (f"  203.0.113.1  ,   {real}   ",),
        (f"203.0.113.1, {real}, 10.1.2.3",),  # through two proxies of the trusted network
    ]
    for lines in cases:
        assert source(edge, "10.0.0.1", *lines) == real, lines
    # A peer outside the trusted network is itself the source, whatever it writes.
    assert source(edge, "192.0.2.50", f"203.0.113.1, {real}") == "192.0.2.50"


def test_ipv6_clients_of_one_network_share_an_anonymous_bucket() -> None:
    """Attack: an anonymous client with an IPv6 prefix (every home or cloud connection gets at least a /64, i.e.
    2^64 addresses) calls from a fresh address each time. Buckets and the per-source sandbox share are keyed
    by the exact address text (ratelimit.py: `ip:{identity.source}`; execution.caller_of), so each address is
    a new anonymous caller with a full quota: the 10/min limit and the 1-execution-per-source cap do not bind.
    The same holds for one address spelt differently by a proxy (`2001:db8::1` vs `2001:DB8:0:0::1`).

    Safe: IPv6 sources count per /64 (normalised), so the third call from the same /64 is refused.
    """
    limits = RateLimits.per_minute(2, 0)
    spellings = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:DB8:1:2:0:0:0:3", "2001:db8:1:2:ffff::4"]
    answers = [limits.check(replace(Identity.anonymous(), source=address)) is None for address in spellings]
    assert answers == [True, True, False, False]


# -- the Lambda front door ----------------------------------------------------------------------------------


class WhoAmI:
    """A stand-in for the `do` tool: answers with the identity it was called as."""

    def __init__(self) -> None:
        self.calls: list[Identity] = []

    async def call(self, arguments: Any, identity: Identity) -> ToolResult:
        self.calls.append(identity)
        return ToolResult([json.dumps({"id": identity.id, "tenant": identity.tenant, "source": identity.source})])


class Clock:
    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now


def lambda_door(
    *, anonymous: bool = True, anonymous_per_minute: int = 0, clock: Clock | None = None
) -> tuple[LambdaFrontDoor, Authenticator, WhoAmI]:
    tool = WhoAmI()
    auth = Authenticator(MemoryKeyStore(), "default", AuthSettings(anonymous=anonymous), clock=clock or utc_now)
    door = LambdaFrontDoor(
        tool,  # type: ignore[arg-type]
        auth,
        allowed_hosts=(API_HOST,),
        limits=RateLimits.per_minute(anonymous_per_minute, 0),
    )
    return door, auth, tool


async def invoke(door: LambdaFrontDoor, *, source_ip: str = "203.0.113.9", **headers: str) -> dict[str, Any]:
    sent = {"Host": API_HOST, "Content-Type": "application/json", **MCP_HEADERS}
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    return await door.handle(v2_event("POST", "/mcp", sent, CALL, source_ip=source_ip))


@pytest.mark.parametrize("content_type", ["application/json-seq", "application/jsonx", "application/json5"])
async def test_lambda_refuses_content_types_that_merely_start_like_json(content_type: str) -> None:
    """Attack: a body sent as `application/json-seq` (or any type whose name starts with `application/json`).
    The local edge compares the media type exactly (400); the Lambda door checks
    `startswith("application/json")` (lambda_http.py) and runs the call. The two front doors disagree on the
    documented rule ("Content-Type: application/json (else 400)"); none of these types is CORS-simple, so a
    page still needs a preflight, which is why this is a hardening gap rather than a cross-site hole.

    Safe: the same media-type comparison as the local edge: 400, and the tool never runs.
    """
    door, _, tool = lambda_door()
    answer = await invoke(door, Content_Type=content_type)
    assert answer["statusCode"] == 400 and tool.calls == []


@pytest.mark.parametrize(
    "origin",
    ["null", f"https://{API_HOST}.evil.example", f"http://{API_HOST}", f"https://{API_HOST}/", "https://evil.example"],
)
async def test_lambda_refuses_cross_site_origins_before_credentials(origin: str) -> None:
    """Attack: a cross-site page against the Lambda door. Defended: 403, the tool never runs."""
    door, _, tool = lambda_door()
    answer = await invoke(door, Origin=origin, Authorization="Bearer sk_not_a_key")
    assert answer["statusCode"] == 403 and tool.calls == []


async def test_lambda_ignores_forwarded_headers_for_the_anonymous_bucket() -> None:
    """Attack: rotate X-Forwarded-For / Forwarded / X-Real-IP on Lambda to get fresh anonymous buckets.
    Defended: the source is API Gateway's sourceIp; another address's bucket is whole."""
    door, _, tool = lambda_door(anonymous_per_minute=2)
    answers = [
        (
            await invoke(
                door, X_Forwarded_For=f"198.51.100.{n}", Forwarded=f"for=198.51.100.{n}", X_Real_IP=f"192.0.2.{n}"
            )
        )["statusCode"]
        for n in range(3)
    ]
    assert answers == [200, 200, 429]
    assert {identity.source for identity in tool.calls} == {"203.0.113.9"}
    assert (await invoke(door, source_ip="203.0.113.10"))["statusCode"] == 200


async def test_lambda_with_anonymous_off_refuses_a_missing_or_blank_credential() -> None:
    """Attack: no Authorization, a blank one, or duplicate case-variant headers where one is blank, with
    MCPDO_ANONYMOUS=off. Defended: 401 every time, the tool never runs."""
    door, _, tool = lambda_door(anonymous=False)
    assert (await invoke(door))["statusCode"] == 401
    assert (await invoke(door, Authorization="   "))["statusCode"] == 401
    answer = await door.handle(
        v2_event(
            "POST",
            "/mcp",
            {
                "Host": API_HOST,
                "Content-Type": "application/json",
                "authorization": "",
                "Authorization": "",
                **MCP_HEADERS,
            },
            CALL,
        )
    )
    assert answer["statusCode"] == 401 and tool.calls == []


async def test_lambda_refuses_an_expired_key_with_the_same_answer_shape() -> None:
    """Attack: keep using a key past its `--expires`, and probe whether a 401 tells a made-up key from a
    revoked one. Defended: the expired key is a 401 from its expiry on; an unknown and a revoked key get the
    very same message (only the holder of a real secret learns it expired)."""
    clock = Clock()
    door, auth, tool = lambda_door(clock=clock)
    secret, _ = await auth.create_key("temp", tenant="acme", expires_at="in 1 minute")
    revoked, revoked_key = await auth.create_key("old", tenant="acme")
    await auth.revoke_key(revoked_key.id)
    assert (await invoke(door, Authorization=f"Bearer {secret}"))["statusCode"] == 200
    clock.now += timedelta(minutes=2)
    expired = await invoke(door, Authorization=f"Bearer {secret}")
    assert expired["statusCode"] == 401 and "expired" in expired["body"]
    unknown = await invoke(door, Authorization="Bearer sk_" + "A" * 43)
    gone = await invoke(door, Authorization=f"Bearer {revoked}")
    assert unknown["statusCode"] == gone["statusCode"] == 401
    assert json.loads(unknown["body"]) == json.loads(gone["body"])
    assert unknown["headers"]["WWW-Authenticate"] == gone["headers"]["WWW-Authenticate"]
    assert len(tool.calls) == 1
