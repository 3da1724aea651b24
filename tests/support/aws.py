"""AWS under moto for tests: one moto server per test session, and tables made from `template.yaml`'s own
definition, so the template and the tests cannot drift apart. Nothing here needs credentials or the internet."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
REGION = "us-east-1"


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads `!Ref`, `!Sub`, `!GetAtt` ... as plain values: tests only need the shapes, not the references."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node)}
    return {suffix: loader.construct_mapping(node)}  # type: ignore[arg-type]


_CloudFormationLoader.add_multi_constructor("!", _tag)


def template() -> dict[str, Any]:
    """`template.yaml`, parsed."""
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CloudFormationLoader)  # a SafeLoader
    return loaded


def table_definition(logical_id: str = "StateTable") -> dict[str, Any]:
    """The `create_table` arguments of a table of the template (keys, attributes, indexes, billing)."""
    props = template()["Resources"][logical_id]["Properties"]
    definition: dict[str, Any] = {
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props["BillingMode"],
    }
    if "GlobalSecondaryIndexes" in props:
        definition["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    return definition


def create_table(logical_id: str = "StateTable") -> str:
    """A new, empty table in the moto server with the template's definition of `logical_id`; its name."""
    name = f"{logical_id}-{uuid.uuid4().hex[:12]}"
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(TableName=name, **table_definition(logical_id))
    client.get_waiter("table_exists").wait(TableName=name)
    return name


@contextmanager
def moto_environment(endpoint: str) -> Iterator[None]:
    """Point every boto3 client of this process at `endpoint` with fake credentials, for the block's length."""
    saved = {name: os.environ.get(name) for name in _ENV}
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }
    )
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION")


# Where the function's environment names the layer's files, a test process uses this checkout's instead.
_LAYER_PATHS = ("MCPDO_NODE", "MCPDO_RUNNER")


def function_environment(table: str) -> dict[str, str]:
    """McpFunction's environment as template.yaml sets it, with `table` as the state table, parameters at
    their defaults and the layer's paths left to this checkout (the host list is the caller's to set)."""
    resources = template()
    params = {name: str(spec.get("Default", "")) for name, spec in resources.get("Parameters", {}).items()}
    variables = resources["Resources"]["McpFunction"]["Properties"]["Environment"]["Variables"]
    env: dict[str, str] = {}
    for name, value in variables.items():
        if name in _LAYER_PATHS or name == "MCPDO_ALLOWED_HOSTS":
            continue
        if isinstance(value, dict) and "Ref" in value:
            value = table if value["Ref"] == "StateTable" else params[value["Ref"]]
        env[name] = str(value)
    return env
