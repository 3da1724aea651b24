"""OAuth bearer tokens as an attacker crafts them, against the verifier and the Authenticator in-process (a
real loopback issuer, real keys, no server process): hostile headers, hostile claims, refresh floods, and
subjects or tenant claims chosen to look like someone else.

Each test either shows a weakness (it asserts the safe behaviour and fails while the weakness is there) or
shows that an attack is already defended, checking that nothing of another caller moved.
"""

from __future__ import annotations

import json
import time

import anyio
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from mcpdo.adapters.memory import MemoryKeyStore
from mcpdo.adapters.oauth_tokens import JwksTokenVerifier, OAuthConfig
from mcpdo.auth import Authenticator, check_tenant
from mcpdo.errors import AuthUnavailable, InputError, Unauthorized
from mcpdo.execution import caller_of, reuse_key
from mcpdo.ratelimit import RateLimits
from mcpdo.settings import AuthSettings

from tests.support.local_issuer import LocalIssuer, _b64, local_issuer, serve_json, with_header

pytestmark = pytest.mark.anyio


def verifier(issuer: LocalIssuer) -> JwksTokenVerifier:
    return JwksTokenVerifier(OAuthConfig(issuer=issuer.issuer, audience=issuer.audience))


def authenticator(issuer: LocalIssuer, keys: MemoryKeyStore | None = None) -> Authenticator:
    return Authenticator(keys or MemoryKeyStore(), "default", AuthSettings(), tokens=verifier(issuer))


def signed_raw(issuer: LocalIssuer, payload_text: str) -> str:
    """A token whose payload is `payload_text` byte for byte (JSON extensions such as NaN included), signed
    with the issuer's published RS256 key: what a buggy or compromised claims mapper at the issuer emits."""
    key = issuer.key("RS256")
    header = _b64(json.dumps({"alg": "RS256", "kid": key.kid, "typ": "JWT"}).encode())
    payload = _b64(payload_text.encode())
    signature = key.private.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64(signature)}"


# -- weaknesses ----------------------------------------------------------------------------------------------


async def test_a_failing_issuer_is_not_asked_again_at_every_request() -> None:
    """Attack: while the issuer is down or slow (or on a cold start whose first fetch failed), an anonymous
    client sends any RS256-looking token, e.g. with a garbage signature. Each one makes the server fetch the
    discovery document again, serialised behind one lock with a 5 s timeout each: N requests are N fetches
    to the issuer (an amplifier aimed at the IdP) and the N-th token caller waits N x 5 s. The module says
    "a failing issuer is not asked again at every request"; that only holds once a key set was ever had.

    Safe: a failed fetch is remembered for REFRESH_INTERVAL_S like a successful one: five tokens, one fetch.
    """
    with local_issuer() as failing:
        failing.fail_with(503)
        verify = verifier(failing)
        token = failing.token("mallory")
        for _ in range(5):
            with pytest.raises(AuthUnavailable):
                await verify.verify(token)
        await verify.close()
        assert failing.discovery_fetches + failing.jwks_fetches <= 2, (
            f"{failing.discovery_fetches} discovery and {failing.jwks_fetches} JWKS fetches for 5 tokens"
        )


async def test_concurrent_tokens_do_not_queue_behind_one_failing_fetch_each() -> None:
    """Attack: the same flood, concurrently. Every waiter on the lock finds no key set and fetches again in
    turn, so ten requests against an issuer that answers in 0.3 s take 3 s (with a hung issuer: 10 x 5 s), and
    every legitimate token user waits at the back of that queue.

    Safe: the waiters share the one failed fetch; ten concurrent refusals take about one fetch's time.
    """
    with local_issuer(delay_s=0.3) as slow:
        slow.fail_with(503)
        verify = verifier(slow)
        token = slow.token("mallory")
        started = time.monotonic()

        async def one() -> None:
            with pytest.raises(AuthUnavailable):
                await verify.verify(token)

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(one)
        elapsed = time.monotonic() - started
        await verify.close()
        assert slow.discovery_fetches <= 2, f"{slow.discovery_fetches} discovery fetches for 10 concurrent tokens"
        assert elapsed < 1.5, f"10 concurrent refusals took {elapsed:.1f} s"


@pytest.mark.parametrize(
    "header",
    [{"kid": "\u20acuro"}, {"alg": "RS\u20ac"}, {"kid": "\u6f22\u5b57"}],
    ids=["kid-euro", "alg-euro", "kid-cjk"],
)
async def test_the_challenge_of_a_hostile_header_is_a_valid_http_header(issuer: LocalIssuer, header: dict) -> None:
    """Attack: an anonymous client (no key, no token of its own: the signature is never reached) sends a token
    whose `kid` or `alg` holds a character outside Latin-1. The refusal quotes it (`_shown` is a repr, which
    keeps printable non-ASCII) into `WWW-Authenticate`; Starlette encodes header values as Latin-1, so the
    local server answers 500 Internal Server Error with a traceback in its log at every such request
    (tests/security/test_identity_attacks_server.py shows it end to end), and on Lambda the non-ASCII header
    goes to API Gateway.

    Safe: the message that goes into the header is ASCII (non-ASCII escaped or dropped).
    """
    from mcpdo.server.bearer import challenge

    token = with_header(issuer.token("mallory"), **header)
    with pytest.raises(Unauthorized) as refused:
        await verifier(issuer).verify(token)
    _, value = challenge(refused.value, "https://mcp.example.test/.well-known/oauth-protected-resource/mcp")
    assert value.isascii(), f"WWW-Authenticate is not ASCII: {value[:110]!r}"


@pytest.mark.parametrize(
    "claims",
    [
        '"exp": Infinity, "iat": {now}',
        '"exp": NaN, "iat": {now}',
        '"exp": 1e13, "iat": {now}',
        '"exp": 253402300800, "iat": {now}',
        '"exp": {later}, "iat": NaN',
    ],
    ids=["exp-infinity", "exp-nan", "exp-year-318857", "exp-year-10000", "iat-nan"],
)
async def test_hostile_numeric_dates_are_a_401_not_a_crash(issuer: LocalIssuer, claims: str) -> None:
    """Attack: a token (signed by the issuer: a misconfigured claims mapper, a custom `exp` in a test tenant)
    with a non-finite NumericDate (Python's json reads `NaN`/`Infinity`) or one past year 9999. `_number`
    accepts any float; then `int(exp)` raises OverflowError/ValueError in the verifier, or `format_iso` raises
    OverflowError in the Authenticator: an uncaught exception, a 500 on the front door instead of the
    documented 401 (and an `exp` of Infinity would mean "never expires" if it got that far).

    Safe: each is refused with Unauthorized (or, for a finite far-future exp, accepted without crashing).
    """
    now = int(time.time())
    head = f'"iss": {json.dumps(issuer.issuer)}, "sub": "mallory", "aud": {json.dumps(issuer.audience)}'
    text = "{" + head + ", " + claims.format(now=now, later=now + 300) + "}"
    try:
        await authenticator(issuer).authenticate(f"Bearer {signed_raw(issuer, text)}")
    except Unauthorized:
        pass  # refused as a 401: safe
    except Exception as exc:  # what the front door turns into a 500
        pytest.fail(f"{type(exc).__name__}: {exc} (uncaught: a 500, not a 401)")


async def test_a_nan_nbf_does_not_switch_off_the_not_before_check(issuer: LocalIssuer) -> None:
    """Attack: `nbf: NaN` in a token the issuer signed. `now + leeway < NaN` is False, so the not-before check
    passes for a token that names no valid start: any comparison with NaN is False, the check fails open.

    Safe: a NumericDate that is not a finite number is refused.
    """
    now = int(time.time())
    head = f'"iss": {json.dumps(issuer.issuer)}, "sub": "mallory", "aud": {json.dumps(issuer.audience)}'
    text = "{" + head + f', "exp": {now + 300}, "nbf": NaN' + "}"
    with pytest.raises(Unauthorized):
        await verifier(issuer).verify(signed_raw(issuer, text))


@pytest.mark.parametrize("sub", ["line\nbreak", "nul\x00byte", "x" * 600], ids=["newline", "nul", "600-chars"])
async def test_a_personal_tenant_obeys_the_tenant_rule(issuer: LocalIssuer, sub: str) -> None:
    """Attack: a token without a tenant claim whose `sub` holds control characters or is long. Its tenant is
    `user:<sub>` built without `check_tenant`, so a tenant name that "goes into every storage key" may hold
    newlines and NULs (log and CLI output forgery, key corruption) or be any length up to the 16 KB token cap
    (past DynamoDB's 2048-byte key limit: every write of that user fails, while a claim of the same text is
    refused).

    Safe: the personal tenant passes the same rule as a claim (or the token is refused).
    """
    try:
        identity = await authenticator(issuer).authenticate(f"Bearer {issuer.token(sub)}")
    except Unauthorized:
        return
    broken = None
    try:
        check_tenant(identity.tenant, "the personal tenant")
    except InputError as exc:
        broken = exc.message[:70]
    assert broken is None, f"personal tenant {identity.tenant[:30]!r} breaks the tenant rule: {broken}"


# -- defended ------------------------------------------------------------------------------------------------


async def test_made_up_kids_cost_at_most_one_fetch_a_minute_even_concurrently(issuer: LocalIssuer) -> None:
    """Attack: once keys are cached, a flood of tokens with fresh kids (path traversal, huge, unicode), from
    many concurrent requests, to make the server hammer the issuer's JWKS. Defended: one refetch at most."""
    verify = verifier(issuer)
    await verify.verify(issuer.token("alice"))
    before = issuer.jwks_fetches
    kids = ["../../../../etc/passwd", "x" * 4000, "k\u00e9y", "%2e%2e%2f", "kid\u202e", *(f"k{n}" for n in range(40))]

    async def one(kid: str) -> None:
        with pytest.raises(Unauthorized):
            await verify.verify(issuer.foreign_token("mallory", kid=kid))

    async with anyio.create_task_group() as group:
        for kid in kids:
            group.start_soon(one, kid)
    assert issuer.jwks_fetches - before <= 1
    assert (await verify.verify(issuer.token("alice"))).subject == "alice"  # the real key still verifies
    await verify.close()


async def test_header_pointers_to_attacker_keys_are_never_followed(issuer: LocalIssuer) -> None:
    """Attack: `jku`/`x5u` naming the attacker's own JWKS, or an embedded `jwk`, with a token signed by the
    attacker's key. Defended: refused, and the attacker's server is never asked."""
    from tests.support.local_issuer import new_key

    mine = new_key("RS256", kid="attacker")
    with serve_json({"/jwks.json": (200, {"keys": [mine.public_jwk()]})}) as evil:
        import jwt

        claims = issuer.claims("mallory", scope="mcp:admin")
        for extra in ({"jku": f"{evil.url}/jwks.json"}, {"x5u": f"{evil.url}/jwks.json"}, {"jwk": mine.public_jwk()}):
            token = jwt.encode(claims, mine.private, algorithm="RS256", headers={"kid": "attacker", **extra})
            with pytest.raises(Unauthorized):
                await verifier(issuer).verify(token)
        assert evil.hits == {}


@pytest.mark.parametrize(
    "header",
    [
        {"crit": ["exp"]},
        {"crit": []},
        {"crit": ["b64"], "b64": False},
        {"alg": "HS256"},
        {"alg": "none"},
        {"alg": "rs256"},
    ],
    ids=["crit-exp", "crit-empty", "crit-b64", "hs256", "none", "lowercase-alg"],
)
async def test_header_tricks_are_refused(issuer: LocalIssuer, header: dict) -> None:
    """Attack: `crit` extensions the server does not implement, alg confusion, a lower-cased alg.
    Defended: each is a 401."""
    with pytest.raises(Unauthorized):
        await verifier(issuer).verify(with_header(issuer.token("mallory", scope="mcp:admin"), **header))


async def test_audience_and_issuer_lookalikes_are_refused(issuer: LocalIssuer) -> None:
    """Attack: an `aud` that only contains the audience as a substring or in another type, an `iss` with a
    trailing slash or another case. Defended (a list that *contains* the audience is RFC 7519's rule)."""
    verify = verifier(issuer)
    for aud in (issuer.audience + "/", issuer.audience.upper(), [issuer.audience + "x"], {"a": issuer.audience}):
        with pytest.raises(Unauthorized):
            await verify.verify(issuer.token("mallory", aud=aud))  # type: ignore[arg-type]
    for iss in (issuer.issuer + "/", issuer.issuer.upper()):
        with pytest.raises(Unauthorized):
            await verify.verify(issuer.token("mallory", extra_claims={"iss": iss}))
    for exp in ("9999999999", True, [9999999999]):
        with pytest.raises(Unauthorized):
            await verify.verify(issuer.token("mallory", extra_claims={"exp": exp}))
    listed = await verify.verify(issuer.token("alice", aud=["https://other.example/mcp", issuer.audience]))
    assert listed.subject == "alice"


async def test_a_subject_that_looks_like_a_key_id_shares_nothing_with_that_key(issuer: LocalIssuer) -> None:
    """Attack: a token user whose `sub` is another caller's API key id (`key_...`), with a tenant claim naming
    that key's tenant, hoping to share its rate bucket, its sandbox share and instance reuse, or to pass as
    the key where handlers look their owner up. Defended: every one of those is keyed by the kind of
    credential too, and the key's quota is untouched by the token user's calls."""
    keys = MemoryKeyStore()
    auth = authenticator(issuer, keys)
    secret, key = await auth.create_key("victim", tenant="acme", roles=("admin",))
    victim = await auth.authenticate(f"Bearer {secret}")
    impostor = await auth.authenticate(
        f"Bearer {issuer.token(key.id, scope='mcp:admin', extra_claims={'tenant': 'acme'})}"
    )
    assert impostor.id == victim.id and impostor.tenant == victim.tenant  # the same words ...
    assert reuse_key(impostor) != reuse_key(victim)  # ... but never the same caller
    assert caller_of(impostor) != caller_of(victim)
    limits = RateLimits.per_minute(10, 3)
    assert [limits.check(impostor) is None for _ in range(4)] == [True, True, True, False]
    assert [limits.check(victim) is None for _ in range(3)] == [True, True, True]  # the key's bucket is whole
    # A module registered by the token user is not taken for one registered with the key: the key's
    # revocation is what stops the key's handlers, and it does not promote the impostor.
    assert (await auth.current(impostor)) is not None and (await auth.current(impostor)).auth_type == "oauth"


@pytest.mark.parametrize(
    "claim",
    ["user:bob", "user:", " user:bob", "User:bob", "\uff55ser:bob", "user:bob\u200b", "acme#Order", "acme%23Order"],
)
async def test_tenant_claims_naming_or_resembling_another_users_tenant(issuer: LocalIssuer, claim: str) -> None:
    """Attack: alice's token (a claim she may be able to edit) names bob's personal tenant, or a lookalike of
    it (space, case, fullwidth, zero-width), or a name that looks like a storage key of tenant `acme`.
    Defended: bob's own tenant is refused; every lookalike is either refused or a tenant of its own,
    distinct as text from `user:bob` and `acme` (stores compare tenants exactly: tests/security/
    test_identity_attacks_server.py reads bob's records through them and finds none)."""
    auth = authenticator(issuer)
    bob = await auth.authenticate(f"Bearer {issuer.token('bob')}")
    assert bob.tenant == "user:bob"
    try:
        alice = await auth.authenticate(f"Bearer {issuer.token('alice', extra_claims={'tenant': claim})}")
    except Unauthorized:
        return
    assert alice.tenant not in ("user:bob", "acme")


async def test_a_token_never_appears_in_a_refusal_or_the_session(issuer: LocalIssuer) -> None:
    """Attack: read a token back from an error (a tampered, expired or foreign token) or from
    `user.session()`. Defended: no refusal message repeats any part of the token."""
    auth = authenticator(issuer)
    good = issuer.token("alice", scope="mcp:write")
    tampered = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    for token in (tampered, issuer.token("alice", exp_in=-3600), issuer.foreign_token("alice"), good + "."):
        with pytest.raises(Unauthorized) as refused:
            await auth.authenticate(f"Bearer {token}")
        for part in token.split("."):
            if part:
                assert part not in refused.value.message
    identity = await auth.authenticate(f"Bearer {good}")
    shown = json.dumps([identity.session(), identity.current()])
    assert all(part not in shown for part in good.split("."))
