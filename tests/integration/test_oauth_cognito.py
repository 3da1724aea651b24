"""Amazon Cognito's tokens, as moto's Cognito hands them out, verified by `JwksTokenVerifier`.

A user pool, an app client and a user with a permanent password are made in the session's moto server; the
user signs in with ADMIN_USER_PASSWORD_AUTH. The issuer is what moto puts in `iss` (Cognito's own form,
`https://cognito-idp.<region>.amazonaws.com/<pool id>`), which is not where moto answers, so the discovery
document comes from a loopback server of ours: it names that issuer and sends `jwks_uri` to moto server's
own JWKS route for the pool (`/<pool id>/.well-known/jwks.json`). Moto's discovery route is tried too.
Access tokens carry no `aud`, only `client_id`: the audience is the app client's id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from mcpdo.adapters.oauth_tokens import JwksTokenVerifier, OAuthConfig
from mcpdo.errors import Unauthorized

from tests.support.cognito import Pool, make_pool
from tests.support.local_issuer import JsonServer, serve_json, with_claims

pytestmark = pytest.mark.anyio


@pytest.fixture
def pool(moto_endpoint: str) -> Pool:
    return make_pool()


@pytest.fixture
def discovery(pool: Pool, moto_endpoint: str) -> Iterator[JsonServer]:
    """Our discovery document for the pool: Cognito's issuer, moto's JWKS route."""
    document = {"issuer": pool.issuer, "jwks_uri": f"{moto_endpoint}/{pool.pool_id}/.well-known/jwks.json"}
    with serve_json({"/openid-configuration": (200, document)}) as server:
        yield server


@pytest.fixture
async def verifier(pool: Pool, discovery: JsonServer) -> AsyncIterator[JwksTokenVerifier]:
    config = OAuthConfig(
        issuer=pool.issuer, audience=pool.client_id, discovery_url=f"{discovery.url}/openid-configuration"
    )
    verifier = JwksTokenVerifier(config)
    yield verifier
    await verifier.close()


async def test_the_access_token_is_accepted_for_its_app_client(verifier: JwksTokenVerifier, pool: Pool) -> None:
    verified = await verifier.verify(pool.access_token)
    assert verified.subject == pool.user_sub
    assert verified.scopes == ("aws.cognito.signin.user.admin",)
    assert verified.claims["client_id"] == pool.client_id and "aud" not in verified.claims
    assert verified.claims["token_use"] == "access" and verified.claims["username"] == "alice"


async def test_the_id_token_is_accepted_with_its_email(verifier: JwksTokenVerifier, pool: Pool) -> None:
    verified = await verifier.verify(pool.id_token)
    assert verified.subject == pool.user_sub
    assert verified.email == "alice@example.com"
    assert verified.claims["aud"] == pool.client_id and verified.claims["token_use"] == "id"


async def test_a_tampered_cognito_token_is_refused(verifier: JwksTokenVerifier, pool: Pool) -> None:
    for token in (pool.access_token, pool.id_token):
        with pytest.raises(Unauthorized, match=r"^Token signature does not verify$"):
            await verifier.verify(with_claims(token, sub="someone-else"))


async def test_tokens_for_another_app_client_are_refused(pool: Pool, discovery: JsonServer) -> None:
    config = OAuthConfig(
        issuer=pool.issuer, audience="another-client", discovery_url=f"{discovery.url}/openid-configuration"
    )
    verifier = JwksTokenVerifier(config)
    try:
        with pytest.raises(Unauthorized, match=r"^Token client_id is not another-client$"):
            await verifier.verify(pool.access_token)
        with pytest.raises(Unauthorized, match=r"^Token audience does not include another-client$"):
            await verifier.verify(pool.id_token)
    finally:
        await verifier.close()


async def test_a_token_of_another_pool_is_refused_though_moto_signs_every_pool_alike(
    verifier: JwksTokenVerifier, pool: Pool
) -> None:
    other = make_pool()
    with pytest.raises(Unauthorized, match=r"^Token issuer is not https://cognito-idp"):
        await verifier.verify(other.access_token)


async def test_motos_own_discovery_route_serves_as_well(pool: Pool, moto_endpoint: str) -> None:
    discovery_url = f"{moto_endpoint}/{pool.pool_id}/.well-known/openid-configuration"
    verifier = JwksTokenVerifier(OAuthConfig(issuer=pool.issuer, audience=pool.client_id, discovery_url=discovery_url))
    try:
        assert (await verifier.verify(pool.access_token)).subject == pool.user_sub
    finally:
        await verifier.close()
