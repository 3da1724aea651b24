"""SecretStore contract: every adapter returns a secret's value as stored (a JSON secret as its text) and None
for a secret that does not exist. Then each adapter's own rules: the file and the environment locally, the
TTL cache on Secrets Manager (driven by an injected clock, never by sleeping)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import boto3
import pytest
from mcpdo.adapters.file_secrets import FileSecrets
from mcpdo.adapters.secretsmanager_secrets import SecretsManagerSecrets
from mcpdo.errors import InputError, StoreError
from mcpdo.ports import SecretStore

from tests.support.aws import REGION

pytestmark = pytest.mark.anyio

JSON_SECRET = json.dumps({"username": "svc", "password": "p@ss:w/rd"})
SECRETS = {
    "STRIPE_SECRET_KEY": "sk_test_51Hx",
    "legacy/credentials": JSON_SECRET,
    "with spaces": " padded value ",
}

Factory = Callable[[Path, pytest.FixtureRequest, dict[str, str]], SecretStore]


def _file(tmp_path: Path, request: pytest.FixtureRequest, secrets: dict[str, str]) -> SecretStore:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(secrets))
    return FileSecrets(path, {})


def _yaml_file(tmp_path: Path, request: pytest.FixtureRequest, secrets: dict[str, str]) -> SecretStore:
    path = tmp_path / "secrets.yaml"
    path.write_text("".join(f"{json.dumps(name)}: {json.dumps(value)}\n" for name, value in secrets.items()))
    return FileSecrets(path, {})


def _environment(tmp_path: Path, request: pytest.FixtureRequest, secrets: dict[str, str]) -> SecretStore:
    return FileSecrets(None, dict(secrets))


def _secretsmanager(tmp_path: Path, request: pytest.FixtureRequest, secrets: dict[str, str]) -> SecretStore:
    request.getfixturevalue("moto_endpoint")
    prefix = f"mcpdo-{uuid.uuid4().hex[:8]}/"
    client = boto3.client("secretsmanager", region_name=REGION)
    for name, value in secrets.items():
        client.create_secret(Name=prefix + name, SecretString=value)
    return SecretsManagerSecrets(client, ttl_s=300, prefix=prefix)


SECRET_STORES: dict[str, Factory] = {
    "file": _file,
    "yaml-file": _yaml_file,
    "environment": _environment,
    "secretsmanager": _secretsmanager,
}


@pytest.fixture(params=sorted(SECRET_STORES))
async def secrets(request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str) -> AsyncIterator[SecretStore]:
    store = SECRET_STORES[request.param](tmp_path, request, SECRETS)
    try:
        yield store
    finally:
        await store.close()


async def test_a_stored_secret_is_returned_as_stored(secrets: SecretStore) -> None:
    assert await secrets.get("STRIPE_SECRET_KEY") == "sk_test_51Hx"
    assert await secrets.get("with spaces") == " padded value "


async def test_a_json_secret_is_returned_as_its_text(secrets: SecretStore) -> None:
    value = await secrets.get("legacy/credentials")
    assert value == JSON_SECRET
    assert isinstance(value, str)


async def test_a_secret_that_does_not_exist_is_none_and_asking_twice_changes_nothing(secrets: SecretStore) -> None:
    assert await secrets.get("SHIPPO_API_KEY") is None
    assert await secrets.get("SHIPPO_API_KEY") is None
    assert await secrets.get("stripe_secret_key") is None  # names are exact


# -- the file and the environment -------------------------------------------------------------------


async def test_the_file_comes_first_then_the_environment_variable_of_the_secret_s_name(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text("A: from-file\n")
    env = {"A": "from-env", "B": "from-env"}
    store = FileSecrets(path, env)
    assert (await store.get("A"), await store.get("B"), await store.get("C")) == ("from-file", "from-env", None)
    env["C"] = "later"
    assert await store.get("C") == "later"


async def test_the_file_is_read_once_when_the_store_is_made(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text("A: one\n")
    store = FileSecrets(path, {})
    path.write_text("A: two\n")
    assert await store.get("A") == "one"


async def test_an_empty_file_holds_no_secrets(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text("")
    assert await FileSecrets(path, {"A": "env"}).get("A") == "env"


def _file_error(tmp_path: Path, text: str | None) -> str:
    path = tmp_path / "secrets.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError) as caught:
        FileSecrets(path, {})
    message = caught.value.message
    assert message.startswith(f"Setting 'MCPDO_SECRETS_FILE' file '{path}'")
    return message


def test_a_missing_file_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    assert "cannot be read" in _file_error(tmp_path, None)


def test_a_file_that_does_not_parse_is_an_error_that_never_quotes_it(tmp_path: Path) -> None:
    message = _file_error(tmp_path, "A: sk_live_do_not_show\nB: [unclosed sk_live_nor_this\n")
    assert "not valid YAML or JSON at line" in message
    assert "sk_live" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "must be a mapping from secret name to value"),
        ("A: 12345678\n", "secret 'A' must be a string (quote it), got a number"),
        ("A: {user: u, password: sk_live_hidden}\n", "secret 'A' must be a string (quote it), got a mapping"),
        ("A: null\n", "got nothing"),
        ("A: 2026-01-01\n", "got a date"),
        ("A: yes\n", "got a boolean"),
        ("1: x\n", "secret name that is not a string"),
    ],
)
def test_a_value_that_is_not_a_string_is_an_error_that_never_shows_it(tmp_path: Path, text: str, expected: str) -> None:
    message = _file_error(tmp_path, text)
    assert expected in message
    assert "12345678" not in message and "sk_live_hidden" not in message


# -- Secrets Manager: the cache ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_changed_secret_is_seen_after_the_ttl_and_not_before(moto_endpoint: str) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    prefix = f"mcpdo-{uuid.uuid4().hex[:8]}/"
    client.create_secret(Name=prefix + "KEY", SecretString="first")
    clock = Clock()
    store = SecretsManagerSecrets(client, ttl_s=60, clock=clock, prefix=prefix)
    assert await store.get("KEY") == "first"
    client.put_secret_value(SecretId=prefix + "KEY", SecretString="second")
    clock.now += 59.9
    assert await store.get("KEY") == "first"
    clock.now += 0.1
    assert await store.get("KEY") == "second"
    await store.close()


async def test_a_missing_secret_is_remembered_for_the_ttl_then_found_once_created(moto_endpoint: str) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    prefix = f"mcpdo-{uuid.uuid4().hex[:8]}/"
    clock = Clock()
    store = SecretsManagerSecrets(client, ttl_s=60, clock=clock, prefix=prefix)
    assert await store.get("KEY") is None
    client.create_secret(Name=prefix + "KEY", SecretString="added")
    clock.now += 30
    assert await store.get("KEY") is None
    clock.now += 30
    assert await store.get("KEY") == "added"


async def test_a_ttl_of_zero_reads_every_time(moto_endpoint: str) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    prefix = f"mcpdo-{uuid.uuid4().hex[:8]}/"
    client.create_secret(Name=prefix + "KEY", SecretString="first")
    store = SecretsManagerSecrets(client, ttl_s=0, clock=Clock(), prefix=prefix)
    assert await store.get("KEY") == "first"
    client.put_secret_value(SecretId=prefix + "KEY", SecretString="second")
    assert await store.get("KEY") == "second"


async def test_each_name_is_read_once_per_ttl_however_often_it_is_asked_for(moto_endpoint: str) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    prefix = f"mcpdo-{uuid.uuid4().hex[:8]}/"
    client.create_secret(Name=prefix + "KEY", SecretString="value")
    reads: list[str] = []
    client.meta.events.register("before-call.secrets-manager.GetSecretValue", lambda **kw: reads.append("read"))
    store = SecretsManagerSecrets(client, ttl_s=60, clock=Clock(), prefix=prefix)
    for _ in range(5):
        assert await store.get("KEY") == "value"
    assert await store.get("OTHER") is None
    assert await store.get("OTHER") is None
    assert len(reads) == 2


async def test_a_secret_with_no_text_is_a_store_error_naming_it(moto_endpoint: str) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    prefix = f"mcpdo-{uuid.uuid4().hex[:8]}/"
    client.create_secret(Name=prefix + "BIN", SecretBinary=b"\x00sk_live_binary")
    store = SecretsManagerSecrets(client, ttl_s=60, prefix=prefix)
    with pytest.raises(StoreError) as caught:
        await store.get("BIN")
    assert f"'{prefix}BIN' holds no text" in caught.value.message
    assert "sk_live" not in caught.value.message


async def test_a_refused_read_is_a_store_error_with_the_code_and_never_a_value(moto_endpoint: str) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    prefix = f"mcpdo-{uuid.uuid4().hex[:8]}/"
    client.create_secret(Name=prefix + "GONE", SecretString="sk_live_deleted")
    client.delete_secret(SecretId=prefix + "GONE", RecoveryWindowInDays=7)
    store = SecretsManagerSecrets(client, ttl_s=60, prefix=prefix)
    with pytest.raises(StoreError) as caught:
        await store.get("GONE")
    assert caught.value.message.startswith(f"Secrets Manager could not read the secret '{prefix}GONE': ")
    assert "sk_live" not in caught.value.message
