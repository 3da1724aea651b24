"""A Cognito user pool in the session's moto server, with one app client and one signed-in user: the tokens
Amazon Cognito would hand an MCP client. Moto signs them with its own key and puts Cognito's issuer in
`iss`; its server publishes the pool's JWKS at `/<pool id>/.well-known/jwks.json`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import boto3

from tests.support.aws import REGION

PASSWORD = "Correct-Horse-9-Battery"


@dataclass(frozen=True)
class Pool:
    pool_id: str
    client_id: str
    user_sub: str
    access_token: str
    id_token: str

    @property
    def issuer(self) -> str:
        return f"https://cognito-idp.{REGION}.amazonaws.com/{self.pool_id}"


def make_pool(email: str = "alice@example.com") -> Pool:
    """A pool with one app client and one confirmed user, signed in: its tokens."""
    cognito = boto3.client("cognito-idp", region_name=REGION)
    pool_id = cognito.create_user_pool(PoolName=f"mcpdo-{uuid.uuid4().hex[:8]}")["UserPool"]["Id"]
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="mcp",
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        ReadAttributes=["email"],  # so the id token carries it
    )["UserPoolClient"]["ClientId"]
    cognito.admin_create_user(
        UserPoolId=pool_id,
        Username="alice",
        UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
        MessageAction="SUPPRESS",
    )
    cognito.admin_set_user_password(UserPoolId=pool_id, Username="alice", Password=PASSWORD, Permanent=True)
    attributes = cognito.admin_get_user(UserPoolId=pool_id, Username="alice")["UserAttributes"]
    sub = next(attribute["Value"] for attribute in attributes if attribute["Name"] == "sub")
    result = cognito.admin_initiate_auth(
        UserPoolId=pool_id,
        ClientId=client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "alice", "PASSWORD": PASSWORD},
    )["AuthenticationResult"]
    return Pool(pool_id, client_id, sub, result["AccessToken"], result["IdToken"])
