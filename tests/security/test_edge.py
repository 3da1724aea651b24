"""The HTTP front door as an attacker meets it: Host and Origin are checked first on every method, then the
Content-Type, then credentials, then quotas; a refused request never spends anyone's allowance, and a
forged X-Forwarded-For moves nobody's bucket unless it comes through a proxy named in
MCPDO_TRUSTED_PROXIES."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import RunningServer, start_server, stop_server

HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
QUOTA = 3


def _server(tmp_path_factory: pytest.TempPathFactory, name: str, **env: str) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp(name), MCPDO_RATE_LIMIT_ANONYMOUS=str(QUOTA), **env)
    yield running
    stop_server(running)


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A fresh server per test: each starts with every bucket full."""
    yield from _server(tmp_path_factory, "edge")


@pytest.fixture
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from _server(tmp_path_factory, "proxied", MCPDO_TRUSTED_PROXIES="127.0.0.1")


def call(server: RunningServer, method: str = "POST", **headers: str) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "do", "arguments": {"script": "1"}}}
    sent = {**HEADERS, "Content-Type": "application/json", **{k.replace("_", "-"): v for k, v in headers.items()}}
    return httpx.request(method, server.url, headers=sent, json=body if method == "POST" else None)


def statuses(server: RunningServer, count: int, **headers: str) -> list[int]:
    return [call(server, **headers).status_code for _ in range(count)]


def test_a_forged_x_forwarded_for_does_not_move_the_anonymous_bucket(server: RunningServer) -> None:
    answers = [call(server, X_Forwarded_For=f"203.0.113.{n}").status_code for n in range(QUOTA + 1)]
    assert answers == [200] * QUOTA + [429]


def test_behind_a_trusted_proxy_each_client_has_its_own_bucket_and_client_written_hops_are_ignored(
    behind_proxy: RunningServer,
) -> None:
    # The proxy appends the address it saw; whatever the client wrote further left is not believed.
    first = [call(behind_proxy, X_Forwarded_For=f"10.9.9.{n}, 198.51.100.7").status_code for n in range(QUOTA + 1)]
    assert first == [200] * QUOTA + [429]
    assert call(behind_proxy, X_Forwarded_For="198.51.100.8").status_code == 200


def test_cross_site_posts_are_refused_before_they_count(server: RunningServer) -> None:
    evil = {"Origin": "http://evil.example"}
    assert statuses(server, QUOTA + 2, **evil) == [403] * (QUOTA + 2)
    text_plain = [
        httpx.post(server.url, headers={**HEADERS, "Content-Type": "text/plain"}, content=b"{}").status_code
        for _ in range(QUOTA + 2)
    ]
    assert text_plain == [400] * (QUOTA + 2)
    # The allowance is whole: none of the refused posts spent it.
    assert statuses(server, QUOTA + 1) == [200] * QUOTA + [429]


@pytest.mark.parametrize("method", ["GET", "DELETE", "OPTIONS", "PUT", "POST"])
def test_the_origin_is_checked_on_every_method(server: RunningServer, method: str) -> None:
    answer = call(server, method, Origin="http://evil.example")
    assert answer.status_code == 403 and "Origin" in answer.text


def test_a_same_origin_get_is_told_only_post_works(server: RunningServer) -> None:
    answer = call(server, "GET", Origin=server.url.removesuffix("/mcp"))
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"


def test_the_origin_is_checked_before_credentials_and_quotas(server: RunningServer) -> None:
    evil = {"Origin": "http://evil.example"}
    assert call(server, Authorization="Bearer sk_not_a_key", **evil).status_code == 403
    assert statuses(server, QUOTA + 1) == [200] * QUOTA + [429]
    assert call(server, **evil).status_code == 403  # not 429: the page learns nothing of the quota


def test_a_rebinding_host_is_refused_before_anything_else(server: RunningServer) -> None:
    answer = call(server, Host="attacker.example", Authorization="Bearer sk_not_a_key")
    assert answer.status_code == 421
    assert statuses(server, QUOTA + 1) == [200] * QUOTA + [429]


def test_a_bad_key_is_a_401_after_the_edge_checks_and_does_not_spend_the_anonymous_allowance(
    server: RunningServer,
) -> None:
    refused = call(server, Authorization="Bearer sk_not_a_key")
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert statuses(server, QUOTA + 1) == [200] * QUOTA + [429]
