"""On Lambda the audit entry is written after the answer: the MCP function registers an internal extension
with the Runtime API (a fake here, tests/support/runtime_api.py, played as Lambda plays it), which writes the
invocation's entries once the handler has answered and before it asks for its next event (which is what
lets Lambda freeze the environment or hand it the next invocation). Without a Runtime API, or when it
refuses the extension, the entry is written before the answer as everywhere else."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from mcpdo import eventloop
from mcpdo.adapters.lambda_extension import NAME, LambdaAfterAnswer
from mcpdo.ports import ExecutionRecord

from tests.support.aws import create_table, function_environment
from tests.support.gateway import SAMPLE_HOST, LambdaContext, running_function, tool_call_event
from tests.support.runtime_api import RuntimeApi, runtime_api
from tests.support.sync import wait_for

TENANT = "acme"


@pytest.fixture(scope="module")
def function_env(moto_endpoint: str) -> dict[str, str]:
    return {
        **function_environment(create_table()),
        "MCPDO_ALLOWED_HOSTS": SAMPLE_HOST,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }


def call(key: str, script: str) -> dict[str, Any]:
    return tool_call_event(key, {"script": script})


def value(response: dict[str, Any]) -> Any:
    assert response["statusCode"] == 200, response
    result = json.loads(response["body"])["result"]
    assert not result.get("isError"), result
    return result["structuredContent"]["value"]


def new_key(function: ModuleType) -> tuple[str, str]:
    secret, key = function.runtime.run(function.runtime.app.auth.create_key("ops", tenant=TENANT, roles=("admin",)))
    return secret, key.id


def entries(function: ModuleType, caller: str) -> list[ExecutionRecord]:
    listed = function.runtime.run(function.runtime.app.adapters.audit.list(TENANT, 100))
    return [entry for entry in listed if entry.caller == caller]


def test_the_answer_comes_before_the_audit_write_and_the_write_before_the_next_event(
    function_env: dict[str, str], api: RuntimeApi
) -> None:
    with running_function({**function_env, **api.environment()}) as function:
        assert api.registrations == [(NAME, {"events": ["INVOKE"]})]
        api.wait_for_next(1)  # INIT is over for the extension: it waits for its first event
        secret, key_id = new_key(function)
        # The extension has not been told of this invocation yet, so nothing of it can have been written.
        context = LambdaContext()
        assert value(function.handler(call(secret, "40 + 2"), context)) == 42
        assert entries(function, key_id) == []
        api.deliver(request_id=context.aws_request_id)
        api.wait_for_next(2)
        [entry] = entries(function, key_id)
        assert (entry.kind, entry.outcome, entry.tenant) == ("script", "ok", TENANT)
        # Invocation after invocation, each one's entry is there when the extension asks for its next event.
        for n in range(3):
            response, _ = api.invoke(function.handler, call(secret, f"throw new Error('no {n}')"), LambdaContext())
            assert json.loads(response["body"])["result"]["isError"]
            assert [e.outcome for e in entries(function, key_id)].count("error") == n + 1
        assert api.bad_identifiers == 0


def test_without_a_runtime_api_the_entry_is_written_before_the_answer(function_env: dict[str, str]) -> None:
    with running_function(function_env) as function:
        secret, key_id = new_key(function)
        value(function.handler(call(secret, "1"), LambdaContext()))
        assert [entry.outcome for entry in entries(function, key_id)] == ["ok"]


def test_a_refused_registration_is_logged_and_the_entry_written_before_the_answer(
    function_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with (
        runtime_api(refuse_registration=403) as refusing,
        caplog.at_level(logging.WARNING),
        running_function({**function_env, **refusing.environment()}) as function,
    ):
        secret, key_id = new_key(function)
        value(function.handler(call(secret, "1"), LambdaContext()))
        assert [entry.outcome for entry in entries(function, key_id)] == ["ok"]
        assert refusing.next_requests == 0
    assert "extension registration refused (HTTP 403)" in caplog.text


# --- the extension alone: its thread against the fake, work on an event loop of its own ----------------------


@pytest.fixture
def extension(api: RuntimeApi) -> Iterator[tuple[LambdaAfterAnswer, list[str]]]:
    done: list[str] = []
    with eventloop.runner() as loop:
        registered = LambdaAfterAnswer.register(api.environment(), loop.run)
        assert registered is not None
        api.wait_for_next(1)
        yield registered, done


def work(done: list[str], name: str, fail: bool = False) -> Any:
    async def run() -> None:
        if fail:
            raise RuntimeError(f"{name} failed")
        done.append(name)

    return run


def test_failing_work_is_logged_and_the_extension_goes_on(
    api: RuntimeApi, extension: tuple[LambdaAfterAnswer, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    after, done = extension
    with caplog.at_level(logging.ERROR):
        request = api.deliver()
        with after.invocation():
            assert after.defer(work(done, "first", fail=True))
            assert after.defer(work(done, "second"))
        api.wait_for_next(2)
    assert done == ["second"]
    assert f"work after the answer of invocation {request} failed" in caplog.text
    assert "first failed" in caplog.text


def test_an_invocation_that_gives_no_answer_by_its_deadline_does_not_hold_the_next_event(
    api: RuntimeApi, extension: tuple[LambdaAfterAnswer, list[str]]
) -> None:
    after, done = extension
    first = api.deliver(deadline_in_s=0.2)
    api.wait_for_next(2)
    # Its late answer's work runs with the next invocation's, once that one answered (never beside its
    # handler), before the extension asks for its next event.
    with after.invocation(first):
        after.defer(work(done, "late"))
    second = api.deliver()
    with after.invocation(second):
        after.defer(work(done, "on time"))
    api.wait_for_next(3)
    assert done == ["late", "on time"]


def test_an_invocation_whose_deadline_is_absurdly_far_still_runs_its_own_work_after_its_answer(
    api: RuntimeApi, extension: tuple[LambdaAfterAnswer, list[str]]
) -> None:
    after, done = extension
    request = api.deliver(deadline_in_s=1e300)  # no wait takes a timeout that long: read as Lambda's longest
    with after.invocation(request):
        after.defer(work(done, "its own"))
    api.wait_for_next(2)
    assert done == ["its own"]


def test_once_the_runtime_api_is_gone_work_is_done_before_the_answer(api: RuntimeApi) -> None:
    done: list[str] = []
    with eventloop.runner() as loop:
        after = LambdaAfterAnswer.register(api.environment(), loop.run)
        assert after is not None
        api.wait_for_next(1)
        with after.invocation():
            assert after.defer(work(done, "deferred"))
            api.close()  # its next-event request fails: the environment is going away
            wait_for(lambda: not after.alive, timeout=10)
        # No extension to hand it to: it ran as the invocation ended, and later work is not deferred.
        assert done == ["deferred"]
        assert after.defer(work(done, "later")) is False


def test_work_past_the_invocations_deadline_is_given_up_and_logged_so_the_next_event_is_asked_in_time(
    api: RuntimeApi, extension: tuple[LambdaAfterAnswer, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    after, done = extension

    async def slow() -> None:
        await asyncio.sleep(30)
        done.append("slow")

    with caplog.at_level(logging.ERROR):
        request = api.deliver(deadline_in_s=1.5)
        with after.invocation():
            after.defer(slow)
            after.defer(work(done, "after it"))
        api.wait_for_next(2, timeout=5)  # the deadline was 1.5 s away: asked in time, not 30 s later
    # Work that would have started after the deadline is given up too: nothing runs past it.
    assert done == []
    assert caplog.text.count(f"work after the answer of invocation {request} failed") == 2


def test_work_handed_over_when_the_extension_stops_still_runs(api: RuntimeApi) -> None:
    done: list[str] = []
    with eventloop.runner() as loop:
        after = LambdaAfterAnswer.register(api.environment(), loop.run)
        assert after is not None
        api.wait_for_next(1)
        with after.invocation():  # answered while the extension still waits for its event
            after.defer(work(done, "handed over"))
        api.close()
        wait_for(lambda: done == ["handed over"], timeout=10)
        assert not after.alive
