"""Hostile scripts against the audit trail on Lambda, where entries are written after the answer by the
function's internal extension (a fake Runtime API plays Lambda here): no way of ending a script leaves it
out of the trail by the time the extension asks for its next event, and a script cannot reach the Runtime
API to release the environment early or read its events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.aws import create_table, function_environment
from tests.support.gateway import SAMPLE_HOST, LambdaContext, running_function, tool_call_event
from tests.support.runtime_api import RuntimeApi

TENANT = "acme"

ENDINGS = {
    "spins past its time": "while (true) {}",
    "allocates past its memory": "const a = []; while (true) a.push('x'.repeat(1 << 16))",
    "throws a value that throws when read": "throw { get message() { throw 1 }, toString() { throw 2 } }",
    "returns a value that throws when serialized": "({ toJSON() { throw new Error('no') } })",
    "returns more than the result limit": "'x'.repeat(8 * 1024 * 1024)",
    "leaves a promise that never settles": "new Promise(() => {})",
}


@pytest.fixture
def function(moto_endpoint: str, api: RuntimeApi) -> Iterator[Any]:
    env = {
        **function_environment(create_table()),
        "MCPDO_ALLOWED_HOSTS": SAMPLE_HOST,
        "MCPDO_TIMEOUT_MS": "400",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        **api.environment(),
    }
    with running_function(env) as running:
        api.wait_for_next(1)
        yield running


def outcome(response: dict[str, Any]) -> bool:
    """Whether the call is an error (the function answered either way)."""
    assert response["statusCode"] == 200, response
    return bool(json.loads(response["body"])["result"].get("isError"))


def test_no_way_of_ending_a_script_keeps_it_out_of_the_trail(function: Any, api: RuntimeApi) -> None:
    secret, key = function.runtime.run(function.runtime.app.auth.create_key("ops", tenant=TENANT, roles=("admin",)))
    for script in ENDINGS.values():
        response, _ = api.invoke(function.handler, tool_call_event(secret, {"script": script}), LambdaContext())
        assert outcome(response)
    trail = function.runtime.run(function.runtime.app.adapters.audit.list(TENANT, 100))
    mine = [entry for entry in trail if entry.caller == key.id]
    assert len(mine) == len(ENDINGS)
    assert {entry.outcome for entry in mine} == {"error"}


def test_an_anonymous_execution_is_in_its_tenants_trail_before_the_next_event(function: Any, api: RuntimeApi) -> None:
    tenant = function.runtime.app.settings.auth.anonymous_tenant
    before = len(function.runtime.run(function.runtime.app.adapters.audit.list(tenant, 1000)))
    response, _ = api.invoke(function.handler, tool_call_event(None, {"script": "1 + 1"}), LambdaContext())
    assert not outcome(response)
    after = function.runtime.run(function.runtime.app.adapters.audit.list(tenant, 1000))
    assert len(after) == before + 1 and after[0].caller == "anonymous"


def test_a_script_cannot_reach_the_runtime_api(function: Any, api: RuntimeApi) -> None:
    secret, _ = function.runtime.run(function.runtime.app.auth.create_key("ops", tenant=TENANT, roles=("admin",)))
    asked = api.next_requests
    for path in ("/2020-01-01/extension/event/next", "/2020-01-01/extension/register"):
        script = f"await api.fetch('http://{api.address}{path}')"
        response, _ = api.invoke(function.handler, tool_call_event(secret, {"script": script}), LambdaContext())
        assert outcome(response)
        assert "refused to connect" in json.loads(response["body"])["result"]["content"][0]["text"]
    # Only the extension asked for events (once per invocation), and nothing else registered.
    assert api.next_requests == asked + 2
    assert len(api.registrations) == 1
