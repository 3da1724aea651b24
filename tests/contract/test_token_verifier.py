"""Bearer JWTs against a loopback issuer (tests/support/local_issuer.py): what `JwksTokenVerifier` accepts, what it
refuses and with which message, and how often it asks the issuer for keys. The clock is injected, so the
once-a-minute refresh rule is tested without sleeping. Nothing here leaves 127.0.0.1."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from mcpdo.adapters.oauth_tokens import REFRESH_INTERVAL_S, IssuerUnavailable, JwksTokenVerifier, OAuthConfig
from mcpdo.errors import Unauthorized
from mcpdo.ports import VerifiedToken

from tests.support.local_issuer import AUDIENCE, LocalIssuer, local_issuer, new_key, with_claims, with_header

pytestmark = pytest.mark.anyio


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    with local_issuer() as running:
        yield running


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def verifier(issuer: LocalIssuer, clock: Clock) -> AsyncIterator[JwksTokenVerifier]:
    verifier = JwksTokenVerifier(OAuthConfig(issuer=issuer.issuer, audience=AUDIENCE), clock=clock)
    yield verifier
    await verifier.close()


async def refused(verifier: JwksTokenVerifier, token: str) -> str:
    """The refusal's message, checked not to carry the token or its signature."""
    with pytest.raises(Unauthorized) as caught:
        await verifier.verify(token)
    message = caught.value.message
    signature = token.rsplit(".", 1)[-1]
    assert token not in message or not token
    assert len(signature) < 8 or signature not in message
    return message


# --- accepted ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_valid_token_is_accepted_with_what_it_says(
    verifier: JwksTokenVerifier, issuer: LocalIssuer, alg: str
) -> None:
    now = int(time.time())
    token = issuer.token(
        "alice", alg=alg, scope="mcp:read mcp:write", extra_claims={"email": "alice@example.com", "name": "Alice"}
    )
    verified = await verifier.verify(token)
    assert verified == VerifiedToken(
        subject="alice",
        scopes=("mcp:read", "mcp:write"),
        issued_at=verified.issued_at,
        expires_at=verified.expires_at,
        email="alice@example.com",
        name="Alice",
        claims=verified.claims,
    )
    assert verified.issued_at is not None and abs(verified.issued_at - now) <= 2
    assert abs(verified.expires_at - (now + 300)) <= 2
    assert verified.claims["iss"] == issuer.issuer
    with pytest.raises(TypeError):
        verified.claims["sub"] = "mallory"  # type: ignore[index]


async def test_scopes_may_come_as_scp_list_and_an_audience_list_need_only_include_ours(
    verifier: JwksTokenVerifier, issuer: LocalIssuer
) -> None:
    token = issuer.token(scope=None, aud=["other", AUDIENCE], extra_claims={"scp": ["a", "b"]})
    verified = await verifier.verify(token)
    assert verified.scopes == ("a", "b")
    assert (verified.email, verified.name) == (None, None)


async def test_the_leeway_covers_a_little_clock_skew(verifier: JwksTokenVerifier, issuer: LocalIssuer) -> None:
    await verifier.verify(issuer.token(exp_in=-10, nbf_in=10, iat_in=10))


async def test_the_keys_are_fetched_once_and_kept(verifier: JwksTokenVerifier, issuer: LocalIssuer) -> None:
    for _ in range(3):
        await verifier.verify(issuer.token())
        await verifier.verify(issuer.token(alg="ES256"))
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 1)


# --- algorithms and keys ------------------------------------------------------------------------------------


async def test_alg_none_is_refused(verifier: JwksTokenVerifier, issuer: LocalIssuer) -> None:
    assert "'none'" in await refused(verifier, issuer.none_token())


async def test_hs256_keyed_with_the_issuers_public_key_is_refused(
    verifier: JwksTokenVerifier, issuer: LocalIssuer
) -> None:
    assert "'HS256'" in await refused(verifier, issuer.hs256_with_public_key())
    assert issuer.jwks_fetches == 0  # refused on its header, before any key was looked up


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512", "PS256", "EdDSA", "RS512", "ES384", "None", ""])
async def test_other_algorithms_are_refused_by_name(verifier: JwksTokenVerifier, issuer: LocalIssuer, alg: str) -> None:
    message = await refused(verifier, with_header(issuer.token(), alg=alg))
    assert repr(alg) in message and "RS256 and ES256" in message


async def test_a_header_without_alg_is_refused(verifier: JwksTokenVerifier, issuer: LocalIssuer) -> None:
    assert "(none)" in await refused(verifier, with_header(issuer.token(), alg=None))


async def test_a_token_signed_with_a_key_not_in_the_jwks_is_refused(
    verifier: JwksTokenVerifier, issuer: LocalIssuer
) -> None:
    # Under the kid of a published key: found, and the signature does not verify with it.
    assert await refused(verifier, issuer.foreign_token()) == "Token signature does not verify"
    assert await refused(verifier, issuer.foreign_token(alg="ES256")) == "Token signature does not verify"


async def test_a_tampered_payload_is_refused(verifier: JwksTokenVerifier, issuer: LocalIssuer) -> None:
    tampered = with_claims(issuer.token(sub="alice"), sub="admin")
    assert await refused(verifier, tampered) == "Token signature does not verify"


async def test_an_rsa_key_is_not_used_for_an_es256_header(verifier: JwksTokenVerifier, issuer: LocalIssuer) -> None:
    rsa_kid = issuer.key("RS256").kid
    message = await refused(verifier, with_header(issuer.token(), alg="ES256"))
    assert message == f"Token signing key {rsa_kid!r} is not usable for ES256"


async def test_keys_pointed_at_by_the_token_are_never_fetched_or_used(
    verifier: JwksTokenVerifier, issuer: LocalIssuer, clock: Clock
) -> None:
    await verifier.verify(issuer.token())
    clock.advance(61)
    with local_issuer() as attacker:
        key = attacker.key("RS256")
        headers = {"jku": attacker.jwks_url, "x5u": f"{attacker.url}/cert.pem", "jwk": key.public_jwk()}
        forged = attacker.token(kid=key.kid, headers=headers, extra_claims={"iss": issuer.issuer})
        assert "is not published by the issuer" in await refused(verifier, forged)
        # The same, under the kid of the real issuer's key.
        impostor = attacker.token(
            kid=key.kid, headers={**headers, "kid": issuer.key("RS256").kid}, extra_claims={"iss": issuer.issuer}
        )
        assert await refused(verifier, impostor) == "Token signature does not verify"
        assert attacker.server.hits == {}


async def test_a_token_without_kid_needs_exactly_one_key_for_its_alg(
    verifier: JwksTokenVerifier, issuer: LocalIssuer
) -> None:
    await verifier.verify(issuer.token(headers={"kid": None}))
    issuer.publish(new_key("RS256"))
    second = JwksTokenVerifier(OAuthConfig(issuer=issuer.issuer, audience=AUDIENCE))
    try:
        message = await refused(second, issuer.token(headers={"kid": None}))
    finally:
        await second.close()
    assert message == "Token has no key id (kid) and the issuer publishes several RS256 keys"


async def test_jwks_keys_for_encryption_or_another_alg_are_not_used(issuer: LocalIssuer) -> None:
    rsa, ec = issuer.key("RS256"), issuer.key("ES256")
    jwks = {"keys": [{**rsa.public_jwk(), "use": "enc"}, {**ec.public_jwk(), "alg": "ES384"}]}
    issuer.server.routes["/jwks.json"] = (200, jwks)
    verifier = JwksTokenVerifier(OAuthConfig(issuer=issuer.issuer, audience=AUDIENCE))
    try:
        assert "is not usable for RS256" in await refused(verifier, issuer.token())
        assert "is not usable for ES256" in await refused(verifier, issuer.token(alg="ES256"))
    finally:
        await verifier.close()


async def test_an_unsupported_critical_header_is_refused(verifier: JwksTokenVerifier, issuer: LocalIssuer) -> None:
    token = issuer.token(headers={"crit": ["urn:example:must-understand"], "urn:example:must-understand": True})
    assert "unsupported crit extension" in await refused(verifier, token)


# --- refreshing the keys ------------------------------------------------------------------------------------


async def test_an_unknown_kid_refreshes_the_keys_once_then_is_refused(
    verifier: JwksTokenVerifier, issuer: LocalIssuer, clock: Clock
) -> None:
    await verifier.verify(issuer.token())
    assert issuer.jwks_fetches == 1
    clock.advance(61)
    message = await refused(verifier, with_header(issuer.token(), kid="unknown-1"))
    assert message == "Token signing key 'unknown-1' is not published by the issuer"
    assert issuer.jwks_fetches == 2
    # Within a minute of that fetch another unknown kid is refused without asking the issuer.
    clock.advance(59)
    await refused(verifier, with_header(issuer.token(), kid="unknown-2"))
    assert issuer.jwks_fetches == 2
    clock.advance(2)
    await refused(verifier, with_header(issuer.token(), kid="unknown-3"))
    assert (issuer.jwks_fetches, issuer.discovery_fetches) == (3, 1)


async def test_a_rotated_key_is_picked_up_by_a_refresh(
    verifier: JwksTokenVerifier, issuer: LocalIssuer, clock: Clock
) -> None:
    old = issuer.token()
    await verifier.verify(old)
    fresh = issuer.rotate("RS256")
    clock.advance(61)
    verified = await verifier.verify(issuer.token(sub="bob"))
    assert verified.subject == "bob" and issuer.key("RS256") == fresh
    assert (issuer.jwks_fetches, issuer.discovery_fetches) == (2, 1)
    # The dropped key is gone from the refreshed set.
    assert "is not published by the issuer" in await refused(verifier, old)


async def test_a_rotation_within_a_minute_of_the_last_fetch_waits_for_the_minute(
    verifier: JwksTokenVerifier, issuer: LocalIssuer, clock: Clock
) -> None:
    await verifier.verify(issuer.token())
    issuer.rotate("RS256")
    await refused(verifier, issuer.token())
    assert issuer.jwks_fetches == 1
    clock.advance(60)
    await verifier.verify(issuer.token())
    assert issuer.jwks_fetches == 2


async def test_concurrent_unknown_kids_share_one_refresh(
    verifier: JwksTokenVerifier, issuer: LocalIssuer, clock: Clock
) -> None:
    await verifier.verify(issuer.token())
    clock.advance(61)
    issuer.server.delay_s = 0.2  # the refresh is slow, so every verification below waits on it
    refusals: list[str] = []

    async def one(n: int) -> None:
        refusals.append(await refused(verifier, with_header(issuer.token(), kid=f"unknown-{n}")))

    async with anyio.create_task_group() as group:
        for n in range(10):
            group.start_soon(one, n)
    assert len(refusals) == 10 and issuer.jwks_fetches == 2


async def test_concurrent_first_verifications_share_one_fetch(verifier: JwksTokenVerifier, issuer: LocalIssuer) -> None:
    issuer.server.delay_s = 0.1
    tokens = [issuer.token(sub=f"user-{n}", alg="RS256" if n % 2 else "ES256") for n in range(10)]
    subjects: list[str] = []

    async def one(token: str) -> None:
        subjects.append((await verifier.verify(token)).subject)

    async with anyio.create_task_group() as group:
        for token in tokens:
            group.start_soon(one, token)
    assert len(subjects) == 10
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 1)


# --- claims -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"exp_in": -31}, "Token expired"),
        ({"exp_in": None}, "Token has no expiry (exp)"),
        ({"nbf_in": 120}, "Token is not valid yet (nbf)"),
        ({"iat_in": 120}, "Token was issued in the future (iat)"),
        ({"extra_claims": {"iss": "https://evil.example.com"}}, "Token issuer is not {issuer}"),
        ({"extra_claims": {"iss": None}}, "Token issuer is not {issuer}"),
        ({"aud": "https://other.example.com/mcp"}, f"Token audience does not include {AUDIENCE}"),
        ({"aud": ["a", "b"]}, f"Token audience does not include {AUDIENCE}"),
        ({"extra_claims": {"aud": None}}, f"Token has no audience (aud); it must include {AUDIENCE}"),
        ({"sub": None}, "Token has no subject (sub)"),
        ({"sub": ""}, "Token has no subject (sub)"),
        ({"extra_claims": {"sub": 42}}, "Token has no subject (sub)"),
        ({"extra_claims": {"exp": "tomorrow"}}, "Token claim exp is not a number"),
    ],
)
async def test_claims_are_checked(
    verifier: JwksTokenVerifier, issuer: LocalIssuer, claims: dict[str, Any], expected: str
) -> None:
    assert await refused(verifier, issuer.token(**claims)) == expected.format(issuer=issuer.issuer)


async def test_time_claims_follow_the_injected_clock(
    verifier: JwksTokenVerifier, issuer: LocalIssuer, clock: Clock
) -> None:
    # The token's times come from the injected clock too: with the wall clock the whole-second `exp` could
    # land a second past the fixture's clock and leave the token valid at "exp + leeway".
    issued = int(clock.now)
    token = issuer.token(exp_in=300, now=issued)
    exp = issued + 300
    await verifier.verify(token)
    clock.now = exp + 30 - 0.5
    await verifier.verify(token)
    clock.now = exp + 30
    assert await refused(verifier, token) == "Token expired"


async def test_a_cognito_access_token_names_its_audience_in_client_id(
    verifier: JwksTokenVerifier, issuer: LocalIssuer
) -> None:
    def cognito(client_id: str) -> str:
        return issuer.token(extra_claims={"aud": None, "client_id": client_id, "token_use": "access"})

    assert (await verifier.verify(cognito(AUDIENCE))).subject == "alice"
    assert await refused(verifier, cognito("another-client")) == f"Token client_id is not {AUDIENCE}"
    # With an `aud`, `client_id` does not stand in for it.
    token = issuer.token(aud="elsewhere", extra_claims={"client_id": AUDIENCE})
    assert await refused(verifier, token) == f"Token audience does not include {AUDIENCE}"


# --- not tokens at all ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "a.b.c",
        "...",
        "a.b.c.d.e",  # five parts: an encrypted JWT (JWE), not accepted
        "eyJhbGciOiJSUzI1NiJ9.e30",
        "eyJhbGciOiJSUzI1NiJ9.%%%.!!!",
        "W10.e30.c2ln",  # header `[]`: JSON, not an object
        "ü.ü.ü",
        "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
        "A" * 100_000,
        "eyJhbGciOiJSUzI1NiJ9." + "A" * 100_000 + ".c2ln",
    ],
)
async def test_garbage_is_refused_as_unauthorized(verifier: JwksTokenVerifier, garbage: str) -> None:
    await refused(verifier, garbage)


async def test_a_valid_token_with_a_broken_payload_is_refused(verifier: JwksTokenVerifier, issuer: LocalIssuer) -> None:
    header, _, signature = issuer.token().split(".")
    for payload in ("", "bm90IGpzb24", "W10"):  # empty, "not json", `[]`
        await refused(verifier, f"{header}.{payload}.{signature}")


async def test_an_oversized_token_is_refused_before_parsing(verifier: JwksTokenVerifier, issuer: LocalIssuer) -> None:
    token = issuer.token(extra_claims={"padding": "x" * 100_000})
    assert await refused(verifier, token) == "Token is larger than 16384 characters"
    assert issuer.jwks_fetches == 0


# --- the issuer's side ---------------------------------------------------------------------------------------


async def test_a_discovery_document_naming_another_issuer_is_issuer_unavailable(issuer: LocalIssuer) -> None:
    path = "/.well-known/openid-configuration"
    issuer.server.routes[path] = (200, {"issuer": "https://evil.example.com", "jwks_uri": issuer.jwks_url})
    verifier = JwksTokenVerifier(OAuthConfig(issuer=issuer.issuer, audience=AUDIENCE))
    try:
        with pytest.raises(IssuerUnavailable, match=re.escape("names issuer 'https://evil.example.com', not http://")):
            await verifier.verify(issuer.token())
    finally:
        await verifier.close()


async def test_the_issuer_is_compared_exactly_trailing_slash_included(issuer: LocalIssuer) -> None:
    verifier = JwksTokenVerifier(OAuthConfig(issuer=issuer.issuer + "/", audience=AUDIENCE))
    try:
        with pytest.raises(IssuerUnavailable, match="names issuer"):
            await verifier.verify(issuer.token())
    finally:
        await verifier.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_issuer_that_is_down_is_issuer_unavailable(issuer: LocalIssuer) -> None:
    down = f"http://127.0.0.1:{_closed_port()}"
    verifier = JwksTokenVerifier(OAuthConfig(issuer=down, audience=AUDIENCE))
    try:
        with pytest.raises(
            IssuerUnavailable, match=re.escape(f"Could not fetch {down}/.well-known/openid-configuration")
        ):
            await verifier.verify(issuer.token(extra_claims={"iss": down}))
    finally:
        await verifier.close()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((500, {"error": "boom"}), "/jwks.json answered HTTP 500"),
        ((200, b"<html>not json</html>"), "/jwks.json answered HTTP 200 with a body that is not JSON"),
        ((200, {"no": "keys"}), "has no list of keys"),
        ((200, b" " * (1024 * 1024 + 1)), "/jwks.json answered with more than 1048576 bytes"),
    ],
)
async def test_a_jwks_that_cannot_be_read_is_issuer_unavailable(
    verifier: JwksTokenVerifier, issuer: LocalIssuer, clock: Clock, answer: tuple[int, object], expected: str
) -> None:
    issuer.server.routes["/jwks.json"] = answer
    with pytest.raises(IssuerUnavailable, match=re.escape(expected)):
        await verifier.verify(issuer.token())
    # Remembered for the refresh interval (the issuer is not asked at every request), then asked again.
    issuer.fail_with(None)
    with pytest.raises(IssuerUnavailable, match=re.escape(expected)):
        await verifier.verify(issuer.token())
    clock.advance(REFRESH_INTERVAL_S)
    await verifier.verify(issuer.token())


async def test_a_failing_discovery_is_issuer_unavailable_naming_url_and_status(
    verifier: JwksTokenVerifier, issuer: LocalIssuer
) -> None:
    issuer.fail_with(503)
    with pytest.raises(IssuerUnavailable, match=f"^{re.escape(issuer.discovery_url)} answered HTTP 503$"):
        await verifier.verify(issuer.token())


async def test_rfc8414_metadata_is_used_when_there_is_no_openid_configuration(issuer: LocalIssuer) -> None:
    routes = issuer.server.routes
    routes["/.well-known/oauth-authorization-server"] = routes.pop("/.well-known/openid-configuration")
    verifier = JwksTokenVerifier(OAuthConfig(issuer=issuer.issuer, audience=AUDIENCE))
    try:
        await verifier.verify(issuer.token())
    finally:
        await verifier.close()
    assert issuer.server.hits["/.well-known/openid-configuration"] == 1  # tried first: a 404


async def test_an_explicit_discovery_url_is_used_as_given(issuer: LocalIssuer) -> None:
    routes = issuer.server.routes
    routes["/custom/discovery"] = routes.pop("/.well-known/openid-configuration")
    config = OAuthConfig(issuer=issuer.issuer, audience=AUDIENCE, discovery_url=f"{issuer.url}/custom/discovery")
    verifier = JwksTokenVerifier(config)
    try:
        await verifier.verify(issuer.token())
    finally:
        await verifier.close()
    assert issuer.discovery_fetches == 0


async def test_an_injected_client_is_used_and_left_open(issuer: LocalIssuer) -> None:
    async with httpx.AsyncClient() as http:
        verifier = JwksTokenVerifier(OAuthConfig(issuer=issuer.issuer, audience=AUDIENCE), http=http)
        await verifier.verify(issuer.token())
        await verifier.close()
        assert not http.is_closed
