"""A local OpenID issuer for tests: real key pairs, a real HTTP server on loopback, and tokens to order.

    with local_issuer() as issuer:             # or: the `issuer` fixture of a test module, built on it
        config = OAuthConfig(issuer=issuer.issuer, audience=AUDIENCE)
        token = issuer.token(sub="alice", scope="mcp:write")            # RS256, signed with a published key
        token = issuer.token(alg="ES256", exp_in=-60)                   # expired
        issuer.rotate("RS256")                                          # new key published, old one dropped
        assert issuer.jwks_fetches == 2

The server answers `/.well-known/openid-configuration` (issuer and `jwks_uri`) and `/jwks.json` (the
published public keys) at `issuer.url`, which is also the issuer identifier. One RSA and one EC P-256 key are
published from the start. Hostile tokens: `none_token`, `hs256_with_public_key`, `foreign_token` (signed
with a key the JWKS does not have), and the module functions `with_header` / `with_claims`, which change a
minted token's header or payload and keep its (now wrong) signature. `serve_json` is the bare server, for a
test that wants to publish documents of its own.

Nothing here reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "https://mcp.example.test/mcp"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# --- the bare server -------------------------------------------------------------------------------------


@dataclass
class JsonServer:
    """A loopback HTTP server answering GETs from `routes`: path -> (status, JSON value, or bytes as they
    are), or a callable giving that pair when asked. Other paths answer 404. `hits` counts GETs per path."""

    url: str = ""
    routes: dict[str, Any] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    delay_s: float = 0.0  # before each answer: lets concurrent callers pile up
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str) -> tuple[int, bytes]:
        with self.lock:
            self.hits[path] = self.hits.get(path, 0) + 1
            route = self.routes.get(path)
        if self.delay_s:
            time.sleep(self.delay_s)
        if route is None:
            return 404, b'{"error": "not found"}'
        status, value = route() if callable(route) else route
        return status, value if isinstance(value, bytes) else json.dumps(value).encode()


@contextmanager
def serve_json(routes: dict[str, Any] | None = None) -> Iterator[JsonServer]:
    """A JsonServer running in a thread (ThreadingHTTPServer, ephemeral port) for the block's length."""
    server = JsonServer(routes=dict(routes or {}))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = server.answer(self.path.split("?", 1)[0])
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    # A short poll interval: shutdown() waits for the loop to notice, and tests start many of these.
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- keys ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str  # RS256 or ES256
    private: PrivateKey

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK, with kid, alg and use, as an issuer publishes it."""
        public = self.private.public_key()
        exported = (
            RSAAlgorithm.to_jwk(public, as_dict=True)
            if isinstance(public, rsa.RSAPublicKey)
            else ECAlgorithm.to_jwk(public, as_dict=True)
        )
        return {**exported, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def new_key(alg: str = "RS256", kid: str | None = None) -> SigningKey:
    """A fresh key pair for `alg` (RS256: RSA 2048, ES256: EC P-256)."""
    private: PrivateKey
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"no key pairs for {alg}")
    return SigningKey(kid=kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", alg=alg, private=private)


# --- tokens, hostile ones included --------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _segment(value: Mapping[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `changes` applied; a change to None removes the entry."""
    merged = {**base, **changes}
    return {name: value for name, value in merged.items() if value is not None}


def with_header(token: str, **changes: Any) -> str:
    """`token` with its header changed (None removes a parameter), payload and signature kept as they were."""
    header, payload, signature = token.split(".")
    return ".".join((_segment(_merged(json.loads(_unb64(header)), changes)), payload, signature))


def with_claims(token: str, **changes: Any) -> str:
    """`token` with its payload changed (None removes a claim), header and signature kept: a tampered token."""
    header, payload, signature = token.split(".")
    return ".".join((header, _segment(_merged(json.loads(_unb64(payload)), changes)), signature))


@dataclass
class LocalIssuer:
    """See the module's docstring. Build it with `local_issuer()`."""

    server: JsonServer
    keys: list[SigningKey]  # published, in order; the newest of an alg signs by default
    audience: str = AUDIENCE

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def issuer(self) -> str:
        """The issuer identifier: what the discovery document and the tokens' `iss` say."""
        return self.server.url

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks.json"

    @property
    def jwks_fetches(self) -> int:
        return self.server.hits.get("/jwks.json", 0)

    @property
    def discovery_fetches(self) -> int:
        return self.server.hits.get("/.well-known/openid-configuration", 0)

    def jwks(self) -> dict[str, Any]:
        """The JWKS as served now."""
        return {"keys": [key.public_jwk() for key in self.keys]}

    def key(self, alg: str = "RS256", kid: str | None = None) -> SigningKey:
        """The published key with `kid`, or the newest published key for `alg`."""
        for key in reversed(self.keys):
            if (kid is None and key.alg == alg) or key.kid == kid:
                return key
        raise KeyError(kid or alg)

    # Publishing

    def publish(self, key: SigningKey) -> SigningKey:
        self.keys.append(key)
        return key

    def drop(self, kid: str) -> None:
        self.keys = [key for key in self.keys if key.kid != kid]

    def rotate(self, alg: str = "RS256") -> SigningKey:
        """A new key for `alg` published, and the previous ones for `alg` dropped; the new key."""
        fresh = new_key(alg)
        self.keys = [key for key in self.keys if key.alg != alg] + [fresh]
        return fresh

    def fail_with(self, status: int | None) -> None:
        """Every answer from now on is `status` (None: back to normal)."""
        if status is None:
            self.server.routes.update(self._routes())
        else:
            for path in self._routes():
                self.server.routes[path] = (status, {"error": "failing on purpose"})

    def _routes(self) -> dict[str, Any]:
        discovery = {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_url,
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }
        return {"/.well-known/openid-configuration": (200, discovery), "/jwks.json": lambda: (200, self.jwks())}

    # Tokens

    def claims(
        self,
        sub: str | None = "alice",
        *,
        aud: str | list[str] | None = None,
        scope: str | None = "mcp:write",
        exp_in: float | None = 300,
        nbf_in: float | None = None,
        iat_in: float | None = 0,
        extra_claims: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """A token's claims: times are seconds from `now` (default: the wall clock); None leaves a claim out.
        `aud` defaults to the issuer's audience; `extra_claims` come last (None values remove claims)."""
        at = time.time() if now is None else now
        base: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": aud if aud is not None else self.audience,
            "scope": scope,
            "exp": None if exp_in is None else int(at + exp_in),
            "nbf": None if nbf_in is None else int(at + nbf_in),
            "iat": None if iat_in is None else int(at + iat_in),
        }
        return _merged(base, extra_claims or {})

    def token(
        self,
        sub: str | None = "alice",
        *,
        alg: str = "RS256",
        kid: str | None = None,
        headers: Mapping[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token signed with a published key (`kid`'s, else the newest for `alg`), its kid in the header.
        `headers` adds header parameters (None removes one, e.g. {"kid": None}); `claims` go to `claims()`."""
        key = self.key(alg, kid)
        header = _merged({"kid": key.kid}, headers or {})
        return jwt.encode(self.claims(sub, **claims), key.private, algorithm=alg, headers=header)

    def foreign_token(
        self, sub: str | None = "alice", *, alg: str = "RS256", kid: str | None = None, **claims: Any
    ) -> str:
        """Signed with a fresh key the JWKS does not have, under `kid` (default: a published key's kid)."""
        impostor = new_key(alg, kid=kid or self.key(alg).kid)
        return jwt.encode(self.claims(sub, **claims), impostor.private, algorithm=alg, headers={"kid": impostor.kid})

    def none_token(self, sub: str | None = "alice", **claims: Any) -> str:
        """`alg: none`, no signature at all."""
        return f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(self.claims(sub, **claims))}."

    def hs256_with_public_key(self, sub: str | None = "alice", *, kid: str | None = None, **claims: Any) -> str:
        """HS256 keyed with the published RSA key's PEM: the algorithm-confusion attack. Signed by hand, as
        PyJWT rightly refuses to use a public key as an HMAC secret."""
        key = self.key("RS256", kid)
        header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
        signing_input = f"{_segment(header)}.{_segment(self.claims(sub, **claims))}"
        mac = hmac.new(key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"


@contextmanager
def local_issuer(audience: str = AUDIENCE, *, delay_s: float = 0.0) -> Iterator[LocalIssuer]:
    """A LocalIssuer serving on 127.0.0.1 for the block's length, with one RS256 and one ES256 key published."""
    with serve_json() as server:
        server.delay_s = delay_s
        issuer = LocalIssuer(server=server, keys=[new_key("RS256"), new_key("ES256")], audience=audience)
        server.routes.update(issuer._routes())
        yield issuer
