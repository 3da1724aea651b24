"""The functions as Lambda runs them, over moto: cold INIT of the MCP function in a fresh process, a warm
no-op `tools/call` through the handler, the 20-create script on the DynamoDB adapter, and `send` to handler
effect through the bus, the queues and the events function (moto's speed is not AWS's: reported only). Run
by bench/run.py, which compares the warm call with the local HTTP path.
"""

from __future__ import annotations

import io
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcpdo.ports import ListQuery  # noqa: E402

from tests.support.aws import (  # noqa: E402
    create_event_stack,
    create_table,
    environment,
    function_environment,
    moto_environment,
)
from tests.support.gateway import SAMPLE_HOST, LambdaContext, load_function, tool_call_event  # noqa: E402
from tests.support.runtime_api import RuntimeApi, runtime_api  # noqa: E402
from tests.support.sqs_source import SqsEventSource, pump  # noqa: E402
from tests.support.sqs_source import load_function as load_named_function  # noqa: E402

COLD_PROBE = """
import json, sys, time
started = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from tests.support.gateway import SAMPLE_HOST, LambdaContext, load_function, v2_event
function = load_function()
ready = time.perf_counter()
call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "do", "arguments": {"script": "1"}}}
headers = {"Host": SAMPLE_HOST, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
answer = function.handler(v2_event("POST", "/mcp", headers, json.dumps(call).encode()), LambdaContext())
assert answer["statusCode"] == 200, answer
print(ready - started, time.perf_counter() - ready)
function.runtime.close()
"""


@contextmanager
def _moto() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log would bury the table
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with moto_environment(f"http://{host}:{port}"):
            yield f"http://{host}:{port}"
    finally:
        server.stop()


# No X-Ray daemon and quiet logs; quotas off, as on the local bench server: a benchmark makes far more calls
# than a minute's quota.
_QUIET = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "MCPDO_RATE_LIMIT_ANONYMOUS": "0",
    "MCPDO_RATE_LIMIT_AUTHENTICATED": "0",
}


# What Lambda itself sets in every execution environment and libraries read at import: with LAMBDA_TASK_ROOT
# the X-Ray SDK takes Lambda's sampling decisions instead of building an X-Ray client of its own (~180 ms of
# INIT that a deployed function does not spend).
_LAMBDA_DEFINED = {
    "LAMBDA_TASK_ROOT": str(ROOT / "functions" / "mcp"),
    "AWS_LAMBDA_FUNCTION_NAME": "mcpdo-McpFunction",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
}


def _function_env(table: str, api: RuntimeApi) -> dict[str, str]:
    """McpFunction's environment as template.yaml and Lambda set it, with the sample host allowed and the fake
    Runtime API its extension registers with."""
    return {
        **function_environment(table),
        "MCPDO_ALLOWED_HOSTS": SAMPLE_HOST,
        **_QUIET,
        **_LAMBDA_DEFINED,
        **api.environment(),
    }


def _cold_inits(env: dict[str, str], runs: int = 3) -> tuple[list[float], list[float]]:
    """Seconds from a fresh interpreter's first line to a ready function (imports, wiring, warm runner), and
    of its first invocation after that (an anonymous no-op call: what is still cold when INIT ends). Each
    registers its extension with a Runtime API of its own, as in its own execution environment."""
    samples, firsts = [], []
    for _ in range(runs):
        with runtime_api() as api:
            done = subprocess.run(
                [sys.executable, "-c", COLD_PROBE, str(ROOT)],
                env={**os.environ, **env, **api.environment()},
                capture_output=True,
                text=True,
                check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(f"cold INIT failed: {done.stderr[-2000:]}")
        init, first = done.stdout.strip().splitlines()[-1].split()
        samples.append(float(init))
        firsts.append(float(first))
    return samples, firsts


def _call_event(key: str, script: str | None = None, module: str | None = None) -> dict[str, Any]:
    arguments = {name: text for name, text in (("script", script), ("module", module)) if text is not None}
    return tool_call_event(key, arguments)


def _timed_invocations(api: RuntimeApi, function: Any, event: dict[str, Any], count: int) -> list[float]:
    """Milliseconds until each answer, invocation after invocation as Lambda runs them: what the extension
    does after an answer is done before the next invocation starts, and not counted (the caller has its answer)."""
    for _ in range(min(10, count)):
        _invoke(function, event, api)
    return [_invoke(function, event, api) * 1000 for _ in range(count)]


def _invoke(function: Any, event: dict[str, Any], api: RuntimeApi | None = None) -> float:
    """One invocation (through `api` as Lambda would run it, when given); the seconds until its answer."""
    if api is None:
        started = time.perf_counter()
        response = function.handler(dict(event), LambdaContext())
        answered = time.perf_counter() - started
    else:
        response, answered = api.invoke(function.handler, dict(event), LambdaContext())
    result = json.loads(response["body"]).get("result", {})
    if response["statusCode"] != 200 or result.get("isError"):
        raise RuntimeError(f"invocation failed: {response['body'][:300]}")
    return answered


def run(twenty_creates: str) -> dict[str, list[float]]:
    """Cold INIT seconds, warm no-op call ms and 20-create ms, all over one moto server."""
    # Powertools reads this when it flushes, after INIT: set for the whole run, the metrics stay off stdout.
    # Disabled, it still prints a set once it holds 100 values (it never clears them): those go nowhere.
    with (
        _moto(),
        runtime_api() as api,
        environment({"POWERTOOLS_METRICS_DISABLED": "true"}),
        redirect_stdout(io.StringIO()),
    ):
        env = _function_env(create_table(), api)
        with environment(env):
            cold, first_calls = _cold_inits(env)
            function = load_function()
        try:
            key, _ = function.runtime.run(function.runtime.app.auth.create_key("bench", tenant="bench"))
            noop = _timed_invocations(api, function, _call_event(key, "1"), 300)
            creates = _timed_invocations(api, function, _call_event(key, twenty_creates), 20)
            lookup = _timed_key_reads(function, key, 100)
            audit_writes = _timed_audit_writes(function, 100)
        finally:
            function.runtime.close()
        send_to_effect = _send_to_effect(20)
    return {
        "cold_init_s": cold,
        "first_call_s": first_calls,
        "python_start_s": _python_starts(),
        "warm_noop_ms": noop,
        "creates_ms": creates,
        "key_read_ms": lookup,
        "audit_write_ms": audit_writes,
        "send_to_effect_ms": send_to_effect,
    }


PONG_MODULE = """---
$id: https://bench.test/pong
---
on($.Bench.ping, async (data) => {
  await db.create('Pong', { n: data.n })
})
"""


def _send_to_effect(count: int) -> list[float]:
    """Milliseconds from a script's `send` through the MCP function to its handler's record being stored:
    PutEvents, the rule to the events queue, routing in the events function, the deliveries queue, the
    handler run. The queues are polled in this process as Lambda's event source would (a 50 ms wait when a
    poll finds nothing, as `pump` does)."""
    stack = create_event_stack()
    with environment({**stack.environment("McpFunction"), "MCPDO_ALLOWED_HOSTS": SAMPLE_HOST, **_QUIET}):
        mcp = load_function()
    events = load_named_function("events", {**stack.environment("EventsFunction"), **_QUIET})
    try:
        key, _ = mcp.runtime.run(mcp.runtime.app.auth.create_key("bench", tenant="bench"))
        _invoke(mcp, _call_event(key, module=PONG_MODULE))
        sources = [
            SqsEventSource(stack.events_queue, events.handler, "EventsFunction"),
            SqsEventSource(stack.deliveries_queue, events.handler, "EventsFunction"),
        ]
        store = events.runtime.app.adapters.store

        def pongs() -> int:
            return len(events.runtime.run(store.list("bench", "Pong", ListQuery(limit=1000))))

        samples = []
        for n in range(count):
            started = time.perf_counter()
            _invoke(mcp, _call_event(key, f"await send($.Bench.ping, {{ n: {n} }})"))
            pump(sources, lambda n=n: pongs() > n)
            samples.append((time.perf_counter() - started) * 1000)
        return samples
    finally:
        events.runtime.close()
        mcp.runtime.close()


def _timed_audit_writes(function: Any, count: int) -> list[float]:
    """What every execution costs after it ends: its audit entry written to the table (here, moto's), which
    on Lambda the extension does after the answer (the next invocation waits for it, the caller does not)."""
    from mcpdo.ports import ExecutionRecord

    audit = function.runtime.app.adapters.audit
    samples = []
    for n in range(count):
        entry = ExecutionRecord(
            id=f"exe_bench{n:06d}",
            tenant="bench",
            caller="bench",
            auth_type="apiKey",
            kind="script",
            script_hash="0" * 64,
            started_at="2026-01-01T00:00:00.000Z",
            duration_ms=1,
            outcome="ok",
        )
        started = time.perf_counter()
        function.runtime.run(audit.record(entry))
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _timed_key_reads(function: Any, key: str, count: int) -> list[float]:
    """What every authenticated call costs before it starts: one key lookup in the table (here, moto's)."""
    auth = function.runtime.app.auth
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        function.runtime.run(auth.authenticate(f"Bearer {key}"))
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _python_starts(runs: int = 3) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        samples.append(time.perf_counter() - started)
    return samples


def profile(count: int = 200) -> None:
    """`python bench/aws.py profile`: where a warm no-op invocation spends its time (cProfile, top 25)."""
    import cProfile
    import pstats

    with _moto(), runtime_api() as api:
        with environment(_function_env(create_table(), api)):
            function = load_function()
        key, _ = function.runtime.run(function.runtime.app.auth.create_key("bench", tenant="bench"))
        event = _call_event(key, "1")
        _timed_invocations(api, function, event, 20)
        profiler = cProfile.Profile()
        profiler.enable()
        _timed_invocations(api, function, event, count)
        profiler.disable()
        function.runtime.close()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    if sys.argv[1:] == ["profile"]:
        profile()
    else:
        found = run("1")
        print({name: round(statistics.median(values), 3) for name, values in found.items()})
