"""AWS under moto for tests: one moto server per test session, and tables made from `template.yaml`'s own
definition, so the template and the tests cannot drift apart. Nothing here needs credentials or the internet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
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
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """`variables` set in os.environ for the block, and what was there before put back after it."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def moto_environment(endpoint: str) -> AbstractContextManager[None]:
    """Point every boto3 client of this process at `endpoint` with fake credentials, for the block's length."""
    fake = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
    return environment({"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": REGION, **fake})


# Where the function's environment names the layer's files, a test process uses this checkout's instead.
_LAYER_PATHS = ("MCPDO_NODE", "MCPDO_RUNNER")


def function_environment(
    table: str, function: str = "McpFunction", refs: dict[str, str] | None = None
) -> dict[str, str]:
    """`function`'s environment as template.yaml sets it (Globals, then its own), with `table` as the state
    table, `refs` for the other resources it names (`Ref` by logical id, `GetAtt` as "Id.Attribute", `Sub`
    by its text), parameters at their defaults and the layer's paths left to this checkout. A variable whose
    reference `refs` does not give is left out (the part is not deployed), and so is the host list (the
    caller's to set)."""
    resources = template()
    params = {name: str(spec.get("Default", "")) for name, spec in resources.get("Parameters", {}).items()}
    known = {**params, "StateTable": table, **(refs or {})}
    variables = {
        **resources.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}),
        **resources["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {}),
    }
    env: dict[str, str] = {}
    for name, value in variables.items():
        if name in _LAYER_PATHS or name == "MCPDO_ALLOWED_HOSTS":
            continue
        resolved = _resolve(value, known)
        if resolved is not None:
            env[name] = resolved
    return env


def _resolve(value: Any, known: dict[str, str]) -> str | None:
    if not isinstance(value, dict):
        return str(value)
    [(kind, ref)] = value.items()
    key = ".".join(ref) if isinstance(ref, list) else str(ref)
    return known.get(key) if kind in ("Ref", "GetAtt", "Sub") else None


@dataclass(frozen=True)
class EventStack:
    """The stack's event resources, made in moto as template.yaml makes them: the bus with its one rule (the
    template's own pattern) targeting the events queue, the deliveries queue, the dead-letter queue and the
    schedule group. Scheduler schedules never fire in moto: tests hand their Input to the schedules function."""

    table: str
    bus: str
    events_queue: str
    deliveries_queue: str
    dead_letter_queue: str
    dead_letter_arn: str
    group: str
    scheduler_role_arn: str = "arn:aws:iam::123456789012:role/mcpdo-scheduler"

    @property
    def schedules_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:123456789012:function:{self.group}-schedules"

    def environment(self, function: str) -> dict[str, str]:
        refs = {
            "EventBus": self.bus,
            "DeliveriesQueue": self.deliveries_queue,
            "DeadLetterQueue": self.dead_letter_queue,
            "DeadLetterQueue.Arn": self.dead_letter_arn,
            "ScheduleGroup": self.group,
            "SchedulerRole.Arn": self.scheduler_role_arn,
        }
        sub = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${AWS::StackName}-schedules"
        refs[sub] = self.schedules_function_arn
        return function_environment(self.table, function, refs)


def create_event_stack() -> EventStack:
    """A fresh table and event resources in the moto server (see EventStack)."""
    suffix = uuid.uuid4().hex[:12]
    resources = template()["Resources"]
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    # A received message comes back after 2 s instead of the template's minutes: a test of a crashed
    # consumer then waits seconds for the redelivery.
    attributes = {"VisibilityTimeout": "2"}
    queues = {
        name: sqs.create_queue(QueueName=f"{name}-{suffix}", Attributes=attributes)["QueueUrl"] for name in _QUEUES
    }
    arns = {
        name: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for name, url in queues.items()
    }
    bus = f"mcpdo-{suffix}-events"
    events.create_event_bus(Name=bus)
    pattern = dict(resources["EventsRule"]["Properties"]["EventPattern"])
    pattern["account"] = ["123456789012"]  # the template's !Ref AWS::AccountId, moto's account
    events.put_rule(Name=f"mcpdo-{suffix}", EventBusName=bus, EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(
        Rule=f"mcpdo-{suffix}", EventBusName=bus, Targets=[{"Id": "events-queue", "Arn": arns["EventsQueue"]}]
    )
    group = f"mcpdo-{suffix}"
    boto3.client("scheduler", region_name=REGION).create_schedule_group(Name=group)
    return EventStack(
        table=create_table(),
        bus=bus,
        events_queue=queues["EventsQueue"],
        deliveries_queue=queues["DeliveriesQueue"],
        dead_letter_queue=queues["DeadLetterQueue"],
        dead_letter_arn=arns["DeadLetterQueue"],
        group=group,
    )


_QUEUES = ("EventsQueue", "DeliveriesQueue", "DeadLetterQueue")


def mcpdo_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`mcpdo ...` as an operator runs it against a deployed stack's settings (here moto, via AWS_ENDPOINT_URL)."""
    binary = Path(sys.executable).parent / "mcpdo"
    return subprocess.run([str(binary), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
