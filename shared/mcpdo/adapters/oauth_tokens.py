"""OAuth 2.1 bearer tokens for the MCP front door (MCP authorization, 2025-11-25): this server is a resource
server, and a token is a JWT the authorization server signed with a key it publishes in its JWKS.

`JwksTokenVerifier.verify` (the TokenVerifier port) turns a bearer token into a `VerifiedToken` or refuses it
with `Unauthorized` (HTTP 401; the message says what was wrong and never repeats the token). When the
issuer's discovery document or JWKS cannot be had, it raises `IssuerUnavailable` (an AuthUnavailable)
instead: that is the server's problem, not the caller's (503).

What it insists on, and why:
- Only RS256 and ES256. The algorithm is read from the token before anything else, so `none`, the HMAC
  family (the classic confusion: HS256 "signed" with the issuer's public key as the secret) and anything
  else is refused by name before a key is even looked up.
- Keys come only from the issuer's JWKS (`jwks_uri` of its discovery document). `jku`, `x5u` and `jwk`
  header parameters are never read: a key a token points at is a key its author chose.
- The JWKS is fetched on first use and kept; a token with an unknown `kid` refetches it once (a rotation),
  but never more than once a minute, so a stream of made-up `kid`s cannot turn into a stream of fetches.
  Kept keys are fetched again once they are an hour old, so a key the issuer withdrew stops verifying.
- Claims are checked here, against the injected clock, rather than by PyJWT: the messages are ours, and a
  test can move time without sleeping. PyJWT (with `cryptography`) does the signature.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx
import jwt

from mcpdo.errors import AuthUnavailable, Unauthorized
from mcpdo.ports import VerifiedToken

# The algorithms accepted, each with the key type (and EC curve) a JWK must have to verify it.
_KEY_TYPES: Mapping[str, tuple[str, str | None]] = {"RS256": ("RSA", None), "ES256": ("EC", "P-256")}
_ACCEPTED = " and ".join(_KEY_TYPES)

# A JWT in an Authorization header is a few KB at most; anything far larger is refused before it is parsed.
MAX_TOKEN_CHARS = 16 * 1024
# Issuer documents are small; a cap keeps a misbehaving (or hostile) endpoint from filling memory.
MAX_DOCUMENT_BYTES = 1024 * 1024
FETCH_TIMEOUT_S = 5.0
# The least time between two JWKS fetches: an unknown kid within it is refused without asking the issuer.
REFRESH_INTERVAL_S = 60.0
# 9999-12-31T23:59:59Z: the last instant dates are shown for.
LATEST_DATE = 253_402_300_799
# Keys older than this are fetched again before use: a key the issuer stopped publishing stops verifying.
KEYS_MAX_AGE_S = 3600.0


class IssuerUnavailable(AuthUnavailable):
    """The issuer's discovery document or JWKS could not be fetched or read: a server-side problem (HTTP 503)."""


@dataclass(frozen=True)
class OAuthConfig:
    """Which authorization server is trusted, and for which resource its tokens must be meant."""

    issuer: str  # compared exactly as given: a trailing slash is significant (RFC 8414)
    audience: str  # the resource URL, unless the operator set another
    discovery_url: str | None = None  # default: OpenID discovery under the issuer, then RFC 8414 on a 404
    leeway_seconds: int = 30  # clock skew allowed for exp, nbf and iat


@dataclass(frozen=True)
class _Key:
    """A JWK usable for verifying: bound to the one accepted algorithm its type allows."""

    kid: str | None
    alg: str
    jwk: jwt.PyJWK


@dataclass(frozen=True)
class _KeySet:
    usable: tuple[_Key, ...]
    kids: frozenset[str]  # every kid published, usable or not, to tell "wrong type" from "unknown"


class JwksTokenVerifier:
    """Verifies bearer JWTs against one issuer. One instance per process: it caches the issuer's keys."""

    def __init__(
        self, config: OAuthConfig, *, http: httpx.AsyncClient | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._config = config
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(follow_redirects=False)
        self._clock = clock
        # One fetch at a time: concurrent verifications that all miss a kid share the one refresh.
        self._lock = anyio.Lock()
        self._jwks_uri: str | None = None
        self._keys: _KeySet | None = None
        self._fetched_at: float | None = None  # when the JWKS was last fetched (or tried), by `clock`
        self._failure: IssuerUnavailable | None = None  # why the last fetch failed, while no keys are at hand

    async def verify(self, token: str) -> VerifiedToken:
        """The verified token, or Unauthorized saying why not (IssuerUnavailable when keys cannot be had)."""
        header = _unverified_header(token)
        alg = _accepted_alg(header)
        kid = _kid(header)
        key = await self._signing_key(alg, kid)
        claims = _signed_claims(token, key, alg)
        return _checked(claims, self._config, self._clock())

    async def close(self) -> None:
        """Closes the HTTP client if this verifier made it (an injected one is its owner's to close)."""
        if self._owns_http:
            await self._http.aclose()

    # --- keys ------------------------------------------------------------------------------------------

    async def _signing_key(self, alg: str, kid: str | None) -> jwt.PyJWK:
        keys = self._keys
        if keys is None or self._too_old():
            keys = await self._fetch_keys(stale=keys)
        key = _select(keys, alg, kid)
        if key is None:
            # Perhaps the issuer rotated its keys since we fetched them: look once more (rate-limited).
            key = _select(await self._fetch_keys(stale=keys), alg, kid)
        if key is None:
            if kid is None:
                raise Unauthorized(f"Token has no key id (kid) and the issuer publishes no {alg} key")
            raise Unauthorized(f"Token signing key {_shown(kid)} is not published by the issuer")
        return key

    def _too_old(self) -> bool:
        return self._fetched_at is not None and self._clock() - self._fetched_at >= KEYS_MAX_AGE_S

    async def _fetch_keys(self, stale: _KeySet | None) -> _KeySet:
        """The JWKS fetched anew, unless another task did so while this one waited for the lock, or the last
        fetch is less than REFRESH_INTERVAL_S old (then the keys at hand are the answer)."""
        async with self._lock:
            current = self._keys
            recent = self._fetched_at is not None and self._clock() - self._fetched_at < REFRESH_INTERVAL_S
            if current is not None and (current is not stale or recent):
                return current
            if current is None and recent and self._failure is not None:
                # A failing issuer is not asked again at every request: its answer stands for the interval,
                # for this caller and every one that queued behind the failed fetch.
                raise IssuerUnavailable(self._failure.message)
            self._fetched_at = self._clock()
            try:
                jwks_uri = self._jwks_uri or await self._discover()
                self._keys = _parse_jwks(await self._get_json(jwks_uri), jwks_uri)
            except IssuerUnavailable as exc:
                self._failure = exc
                raise
            self._failure = None
            return self._keys

    async def _discover(self) -> str:
        """The issuer's `jwks_uri`, from its discovery document (which must name the configured issuer)."""
        issuer = self._config.issuer
        if self._config.discovery_url is not None:
            url = self._config.discovery_url
            document = await self._get_json(url)
        else:
            url = issuer.rstrip("/") + "/.well-known/openid-configuration"
            status, body = await self._get(url)
            if status == 404:  # not an OpenID provider: the plain OAuth metadata of RFC 8414
                url = _rfc8414_url(issuer)
                status, body = await self._get(url)
            document = _json(url, status, body)
        if not isinstance(document, dict):
            raise IssuerUnavailable(f"The discovery document at {url} is not a JSON object")
        if document.get("issuer") != issuer:
            raise IssuerUnavailable(
                f"The discovery document at {url} names issuer {_shown(document.get('issuer'))}, not {issuer}"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or urlsplit(jwks_uri).scheme not in ("http", "https"):
            raise IssuerUnavailable(f"The discovery document at {url} has no usable jwks_uri")
        self._jwks_uri = jwks_uri
        return jwks_uri

    async def _get_json(self, url: str) -> Any:
        return _json(url, *await self._get(url))

    async def _get(self, url: str) -> tuple[int, bytes]:
        """Status and body of a GET, the body read as a stream and refused past MAX_DOCUMENT_BYTES."""
        try:
            async with self._http.stream(
                "GET", url, headers={"Accept": "application/json"}, timeout=FETCH_TIMEOUT_S
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise IssuerUnavailable(f"{url} answered with more than {MAX_DOCUMENT_BYTES} bytes")
                return response.status_code, bytes(body)
        except httpx.HTTPError as exc:
            raise IssuerUnavailable(f"Could not fetch {url}: {type(exc).__name__}") from exc


def _rfc8414_url(issuer: str) -> str:
    """RFC 8414 §3: the well-known segment goes between the host and the issuer's path."""
    parts = urlsplit(issuer)
    path = "/.well-known/oauth-authorization-server" + parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _json(url: str, status: int, body: bytes) -> Any:
    if not 200 <= status < 300:
        raise IssuerUnavailable(f"{url} answered HTTP {status}")
    try:
        return json.loads(body)
    except ValueError:
        raise IssuerUnavailable(f"{url} answered HTTP {status} with a body that is not JSON") from None


def _parse_jwks(document: Any, url: str) -> _KeySet:
    """The keys of a JWKS that can verify an accepted algorithm; the others are skipped, not fatal (an
    issuer may publish encryption keys or algorithms this server does not accept next to its signing keys)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise IssuerUnavailable(f"The JWKS at {url} has no list of keys")
    entries = [entry for entry in document["keys"] if isinstance(entry, dict)]
    usable = tuple(key for key in map(_usable_key, entries) if key is not None)
    kids = frozenset(entry["kid"] for entry in entries if isinstance(entry.get("kid"), str))
    return _KeySet(usable=usable, kids=kids)


def _usable_key(entry: dict[str, Any]) -> _Key | None:
    """The JWK bound to the accepted algorithm its type allows, or None when it may not verify tokens here."""
    alg = next((a for a, (kty, crv) in _KEY_TYPES.items() if entry.get("kty") == kty and _curve_ok(entry, crv)), None)
    if alg is None:
        return None
    if entry.get("use", "sig") != "sig" or entry.get("alg", alg) != alg:
        return None
    kid = entry.get("kid")
    try:
        jwk = jwt.PyJWK(entry, algorithm=alg)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None  # malformed key material: unusable, like a key of another type
    return _Key(kid=kid if isinstance(kid, str) else None, alg=alg, jwk=jwk)


def _curve_ok(entry: dict[str, Any], crv: str | None) -> bool:
    return crv is None or entry.get("crv") == crv


def _select(keys: _KeySet, alg: str, kid: str | None) -> jwt.PyJWK | None:
    """The key for a token's alg and kid; None when the issuer does not (yet) publish it."""
    if kid is None:
        # Without a kid only an unambiguous key will do: trying each would let a token pick among them.
        candidates = [key for key in keys.usable if key.alg == alg]
        if len(candidates) > 1:
            raise Unauthorized(f"Token has no key id (kid) and the issuer publishes several {alg} keys")
        return candidates[0].jwk if candidates else None
    for key in keys.usable:
        if key.kid == kid and key.alg == alg:
            return key.jwk
    if kid in keys.kids:
        raise Unauthorized(f"Token signing key {_shown(kid)} is not usable for {alg}")
    return None


# --- the token -------------------------------------------------------------------------------------------


def _unverified_header(token: str) -> dict[str, Any]:
    if not isinstance(token, str) or not token:
        raise Unauthorized("Token is empty")
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthorized(f"Token is larger than {MAX_TOKEN_CHARS} characters")
    if token.count(".") != 2:
        raise Unauthorized("Token is not a signed JWT (three dot-separated parts)")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        # `from None`: PyJWT's own error may quote parts of the token, and logs print the chain.
        raise Unauthorized("Token is not a well-formed JWT") from None
    except jwt.PyJWTError:
        # PyJWT's header rules: `crit` must list only extensions it implements, `kid` must be a string.
        raise Unauthorized("Token header is not acceptable (an unsupported crit extension, or a bad kid)") from None
    return header


def _accepted_alg(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in _KEY_TYPES:
        raise Unauthorized(f"Token algorithm {_shown(alg)} is not accepted (only {_ACCEPTED})")
    return alg


def _kid(header: Mapping[str, Any]) -> str | None:
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise Unauthorized("Token key id (kid) is not a string")
    return kid


def _signed_claims(token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
    """The payload, once the signature verifies; every claim is checked afterwards by `_checked`."""
    unchecked = {name: False for name in ("exp", "nbf", "iat", "aud", "iss", "sub", "jti")}
    options: Any = {"verify_signature": True, **{f"verify_{name}": off for name, off in unchecked.items()}}
    try:
        claims: dict[str, Any] = jwt.decode(token, key=key, algorithms=[alg], options=options)
    except jwt.InvalidSignatureError:
        raise Unauthorized("Token signature does not verify") from None
    except jwt.DecodeError:
        raise Unauthorized("Token is not a well-formed JWT") from None
    except jwt.PyJWTError as exc:
        # Left: header rules such as an unsupported `crit` extension. PyJWT's messages name the rule only.
        raise Unauthorized(f"Token is not acceptable: {type(exc).__name__}") from None
    return claims


def _checked(claims: dict[str, Any], config: OAuthConfig, now: float) -> VerifiedToken:
    """The token's claims held against the configuration and the clock (with the leeway)."""
    leeway = config.leeway_seconds
    if claims.get("iss") != config.issuer:
        raise Unauthorized(f"Token issuer is not {config.issuer}")
    _check_audience(claims, config.audience)
    exp = _number(claims, "exp")
    if exp is None:
        raise Unauthorized("Token has no expiry (exp)")
    if now >= exp + leeway:
        raise Unauthorized("Token expired")
    nbf = _number(claims, "nbf")
    if nbf is not None and now + leeway < nbf:
        raise Unauthorized("Token is not valid yet (nbf)")
    iat = _number(claims, "iat")
    if iat is not None and now + leeway < iat:
        raise Unauthorized("Token was issued in the future (iat)")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("Token has no subject (sub)")
    return VerifiedToken(
        subject=subject,
        scopes=_scopes(claims),
        issued_at=int(iat) if iat is not None else None,
        expires_at=int(exp),
        email=_text(claims, "email"),
        name=_text(claims, "name"),
        claims=MappingProxyType(copy.deepcopy(claims)),
    )


def _check_audience(claims: Mapping[str, Any], audience: str) -> None:
    if "aud" in claims:
        aud = claims["aud"]
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if audience not in audiences:
            raise Unauthorized(f"Token audience does not include {audience}")
    elif "client_id" in claims:
        # Amazon Cognito's access tokens carry no `aud`; their `client_id` is the app client they were issued to.
        if claims["client_id"] != audience:
            raise Unauthorized(f"Token client_id is not {audience}")
    else:
        raise Unauthorized(f"Token has no audience (aud); it must include {audience}")


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim (RFC 7519: seconds, possibly fractional), None when absent; anything else refused."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthorized(f"Token claim {name} is not a number")
    # NaN would pass every comparison and Infinity no conversion: only instants from 1970 to 9999 are dates.
    if not (isinstance(value, int) or math.isfinite(value)) or not 0 <= value <= LATEST_DATE:
        raise Unauthorized(f"Token claim {name} is not a date between 1970 and 9999")
    return float(value)


def _scopes(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """`scope` (RFC 8693/9068: a space-separated string) or, from some issuers, `scp` (a list or a string)."""
    raw = claims.get("scope", claims.get("scp"))
    if isinstance(raw, str):
        return tuple(raw.split())
    if isinstance(raw, list):
        return tuple(item for item in raw if isinstance(item, str) and item)
    return ()


def _text(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) else None


def _shown(value: object) -> str:
    """A header or document value fit for a message: escaped to ASCII (no control characters, nothing an HTTP
    header cannot carry) and cut short."""
    text = "(none)" if value is None else ascii(value)
    return text if len(text) <= 64 else text[:61] + "..."
