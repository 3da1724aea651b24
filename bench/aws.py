"""The MCP function as Lambda runs it, over DynamoDB in moto: cold INIT in a fresh process, a warm no-op
`tools/call` through the handler, and the 20-create script on the DynamoDB adapter (moto's speed is not
DynamoDB's: reported only). Run by bench/run.py, which compares the warm call with the local HTTP path.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.aws import create_table, function_environment, moto_environment  # noqa: E402
from tests.support.gateway import SAMPLE_HOST, LambdaContext, load_function, v2_event  # noqa: E402

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

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with moto_environment(f"http://{host}:{port}"):
            yield f"http://{host}:{port}"
    finally:
        server.stop()


def _function_env(table: str) -> dict[str, str]:
    # As template.yaml sets it, with the sample host allowed, no X-Ray daemon and quiet logs.
    quiet = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING"}
    # Quotas off, as on the local bench server: a benchmark makes far more calls than a minute's quota.
    quiet |= {"MCPDO_RATE_LIMIT_ANONYMOUS": "0", "MCPDO_RATE_LIMIT_AUTHENTICATED": "0"}
    return {**function_environment(table), "MCPDO_ALLOWED_HOSTS": SAMPLE_HOST, **quiet}


def _cold_inits(env: dict[str, str], runs: int = 3) -> tuple[list[float], list[float]]:
    """Seconds from a fresh interpreter's first line to a ready function (imports, wiring, warm runner), and
    of its first invocation after that (an anonymous no-op call: what is still cold when INIT ends)."""
    samples, firsts = [], []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", COLD_PROBE, str(ROOT)],
            env={**os.environ, **env},
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


def _call_event(key: str, script: str) -> dict[str, Any]:
    params = {"name": "do", "arguments": {"script": script}}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    headers = {
        "Host": SAMPLE_HOST,
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
        "Authorization": f"Bearer {key}",
    }
    return v2_event("POST", "/mcp", headers, json.dumps(body).encode())


def _timed_invocations(function: Any, event: dict[str, Any], count: int) -> list[float]:
    for _ in range(min(10, count)):
        _invoke(function, event)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        _invoke(function, event)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _invoke(function: Any, event: dict[str, Any]) -> None:
    response = function.handler(dict(event), LambdaContext())
    result = json.loads(response["body"]).get("result", {})
    if response["statusCode"] != 200 or result.get("isError"):
        raise RuntimeError(f"invocation failed: {response['body'][:300]}")


def run(twenty_creates: str) -> dict[str, list[float]]:
    """Cold INIT seconds, warm no-op call ms and 20-create ms, all over one moto server."""
    with _moto():
        env = _function_env(create_table())
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            cold, first_calls = _cold_inits(env)
            function = load_function()
            try:
                key, _ = function.runtime.run(function.runtime.app.auth.create_key("bench", tenant="bench"))
                noop = _timed_invocations(function, _call_event(key, "1"), 300)
                creates = _timed_invocations(function, _call_event(key, twenty_creates), 20)
                lookup = _timed_key_reads(function, key, 100)
            finally:
                function.runtime.close()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    return {
        "cold_init_s": cold,
        "first_call_s": first_calls,
        "python_start_s": _python_starts(),
        "warm_noop_ms": noop,
        "creates_ms": creates,
        "key_read_ms": lookup,
    }


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

    with _moto():
        env = _function_env(create_table())
        os.environ.update(env)
        function = load_function()
        key, _ = function.runtime.run(function.runtime.app.auth.create_key("bench", tenant="bench"))
        event = _call_event(key, "1")
        _timed_invocations(function, event, 20)
        profiler = cProfile.Profile()
        profiler.enable()
        _timed_invocations(function, event, count)
        profiler.disable()
        function.runtime.close()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    if sys.argv[1:] == ["profile"]:
        profile()
    else:
        found = run("1")
        print({name: round(statistics.median(values), 3) for name, values in found.items()})
