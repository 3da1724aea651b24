"""Both deployments behind one interface, so one suite runs the reference's module examples on each:

- `local`: `mcpdo serve` in its own process (SQLite, the in-process worker and cron loop);
- `aws`: the MCP function behind a fake API Gateway, and the events and schedules functions, over moto
  (DynamoDB, EventBridge with its rule to the events queue, SQS, Scheduler, SES).

`settle(check)` waits until `check()` holds while the deployment does its event work: locally the worker
runs by itself; on AWS nothing fires in moto, so each turn drains the queues into the events function (as
Lambda's SQS event source would). `fire` hands a live schedule's slot to whatever fires it there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import boto3

from tests.support.aws import REGION, create_event_stack, mcpdo_cli
from tests.support.gateway import fake_gateway
from tests.support.server import start_server, stop_server
from tests.support.sqs_source import FunctionContext, SqsEventSource, load_function
from tests.support.sync import outbox, wait_for


class Deployment(Protocol):
    name: str
    url: str
    admin_key: str

    def settle(self, check: Callable[[], Any], timeout: float = 30.0) -> Any: ...

    def mail(self) -> list[dict[str, Any]]:
        """Every mail the built-in mailer sent: {to, subject, body}, oldest first."""
        ...

    def fire(self, module_id: str, schedule: str) -> None:
        """Fire the current slot of a live schedule of `module_id` (its text as written)."""
        ...


@dataclass
class LocalDeployment:
    name: str
    url: str
    admin_key: str
    server: Any

    def settle(self, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        return wait_for(check, timeout)

    def mail(self) -> list[dict[str, Any]]:
        return [{"to": m["to"], "subject": m["subject"], "body": m.get("body")} for m in reversed(outbox(self.server))]

    def fire(self, module_id: str, schedule: str) -> None:
        done = self.server.mcpdo("schedules", "list")
        assert done.returncode == 0, done.stderr
        [entry] = [s for s in json.loads(done.stdout) if s["module"] == module_id and s["schedule"] == schedule]
        fired = self.server.mcpdo("schedules", "fire", entry["id"])
        assert fired.returncode == 0, fired.stderr


@dataclass
class AwsDeployment:
    name: str
    url: str
    admin_key: str
    group: str
    mail_from: str
    events: Any
    schedules: Any
    sources: list[SqsEventSource] = field(default_factory=list)

    def settle(self, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        return wait_for(check, timeout, step=lambda: sum(source.run_once() for source in self.sources))

    def mail(self) -> list[dict[str, Any]]:
        from moto.ses.models import ses_backends

        sent = ses_backends["123456789012"][REGION].sent_messages
        return [
            {"to": m.destinations["ToAddresses"][0], "subject": m.subject, "body": m.body}
            for m in sent
            if m.source == self.mail_from  # moto's SES is shared by the session: this deployment's own
        ]

    def fire(self, module_id: str, schedule: str) -> None:
        client = boto3.client("scheduler", region_name=REGION)
        for listed in client.list_schedules(GroupName=self.group)["Schedules"]:
            target = client.get_schedule(GroupName=self.group, Name=listed["Name"])["Target"]
            fire = json.loads(target["Input"])
            if (fire["moduleId"], fire["schedule"]) == (module_id, schedule):
                fire["scheduledTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                answer = self.schedules.handler(fire, FunctionContext("SchedulesFunction"))
                assert answer["fired"], answer
                return
        raise AssertionError(f"no live schedule {schedule!r} of {module_id}")


@contextmanager
def local_deployment(state: Path) -> Iterator[LocalDeployment]:
    server = start_server(state, MCPDO_RETRY_BASE_MS="50")
    try:
        yield LocalDeployment("local", server.url, server.admin_key, server)
    finally:
        stop_server(server)


@contextmanager
def aws_deployment() -> Iterator[AwsDeployment]:
    """Needs the moto server running (the `moto_endpoint` fixture)."""
    stack = create_event_stack()
    mail_from = f"ops@{stack.group}.test"
    boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress=mail_from)

    def env(function: str) -> dict[str, str]:
        quick = {"MCPDO_RETRY_BASE_MS": "50", "POWERTOOLS_TRACE_DISABLED": "true", "MCPDO_MAIL_FROM": mail_from}
        quick |= {"MCPDO_RATE_LIMIT_AUTHENTICATED": "0"}  # the suite polls with the admin key
        return {**stack.environment(function), **quick}

    made = mcpdo_cli(env("McpFunction"), "keys", "create", "--name", "ops", "--tenant", "acme", "--role", "admin")
    assert made.returncode == 0, made.stderr
    with ExitStack() as stack_of_functions:
        gateway = stack_of_functions.enter_context(fake_gateway(env("McpFunction")))
        events = load_function("events", env("EventsFunction"))
        stack_of_functions.callback(events.runtime.close)
        schedules = load_function("schedules", env("SchedulesFunction"))
        stack_of_functions.callback(schedules.runtime.close)
        key = made.stdout.strip()
        deployment = AwsDeployment("aws", gateway.url, key, stack.group, mail_from, events, schedules)
        deployment.sources = [
            SqsEventSource(stack.events_queue, events.handler, "EventsFunction"),
            SqsEventSource(stack.deliveries_queue, events.handler, "EventsFunction"),
        ]
        yield deployment
