"""SecretStore on AWS Secrets Manager: GetSecretValue of `<prefix><name>`, each answer (a missing secret
included) kept for `ttl_s` in this execution environment, so a warm function reads a secret once per TTL and
a rotated or newly added secret is seen within it.

A secret's SecretString is returned as stored: a JSON secret is its JSON text. No error text or log line
carries a value: failures name the secret and Secrets Manager's error code only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from mcpdo.adapters.aws_calls import AwsCallFailed, aws_call
from mcpdo.errors import StoreError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

SERVICE = "Secrets Manager"
NOT_FOUND = "ResourceNotFoundException"


class SecretsManagerSecrets:
    """Secrets by name from Secrets Manager, cached per name for `ttl_s` seconds of `clock`."""

    def __init__(
        self,
        client: SecretsManagerClient,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        prefix: str = "",
    ) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._clock = clock
        self._prefix = prefix
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, name: str) -> str | None:
        """The SecretString of `<prefix><name>`; None when there is no such secret."""
        cached = self._fresh(name)
        if cached is not None:
            return cached[1]
        # One read per name at a time: callers arriving together share it.
        async with self._locks.setdefault(name, asyncio.Lock()):
            cached = self._fresh(name)
            if cached is not None:
                return cached[1]
            value = await self._read(name)
            self._cache[name] = (self._clock(), value)
            return value

    async def close(self) -> None:
        """Release the client."""
        self._client.close()

    def _fresh(self, name: str) -> tuple[float, str | None] | None:
        cached = self._cache.get(name)
        if cached is None or self._clock() - cached[0] >= self._ttl_s:
            return None
        return cached

    async def _read(self, name: str) -> str | None:
        secret_id = self._prefix + name
        try:
            answer = await aws_call(SERVICE, self._client.get_secret_value, SecretId=secret_id)
        except AwsCallFailed as exc:
            if exc.code == NOT_FOUND:
                return None
            raise StoreError(f"{SERVICE} could not read the secret '{secret_id}': {exc.code}") from exc
        value = answer.get("SecretString")
        if value is None:
            raise StoreError(f"{SERVICE} secret '{secret_id}' holds no text (SecretString): store it as a string")
        return value
