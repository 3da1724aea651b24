"""A runner that writes what it should not (forged, misaddressed, planted, malformed lines) is replaced,
only its own execution fails, and no reply ever reaches another execution."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcpdo.errors import McpdoError, SandboxCrashed
from mcpdo.sandbox import ExecutionRequest, Limits, Sandbox
from mcpdo.sandbox.process import RunnerProcess
from mcpdo.sandbox.protocol import CallMessage, ExecutionChannel, ProtocolViolation, ResultMessage

pytestmark = pytest.mark.anyio

FAKE_RUNNER = Path(__file__).with_name("fake_runner.py")


@pytest.fixture(scope="module")
def fake_node(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Stands where the Node binary would: drops Node's flags and runs the fake runner with this Python."""
    path = tmp_path_factory.mktemp("fake") / "node"
    path.write_text(f'#!/bin/sh\nwhile [ "${{1#--}}" != "$1" ]; do shift; done\nexec {sys.executable} "$@"\n')
    path.chmod(0o755)
    return str(path)


OWN_RESULT = '{"type":"result","exec":{exec},"nonce":{nonce},"ok":true,"undefined":false,"value":"own","logs":[]}'
OWN_CALL = '{"type":"call","exec":{exec},"nonce":{nonce},"id":7,"name":"db.list","args":["Order"]}'


def forged(lines: list[Any]) -> ExecutionRequest:
    return ExecutionRequest(code=json.dumps(lines), limits=Limits(timeout_ms=2000), readonly=False)


class Host:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []

    async def __call__(self, name: str, args: list[Any]) -> Any:
        self.calls.append((name, args))
        return []


async def fake_process(fake_node: str) -> RunnerProcess:
    proc = RunnerProcess(fake_node, FAKE_RUNNER, ready_timeout=10)
    await proc.start()
    return proc


FORGERIES = [
    ("another execution's result", ['{"type":"result","exec":999,"nonce":{nonce},"ok":true,"value":"forged"}']),
    ("a result without the nonce", ['{"type":"result","exec":{exec},"nonce":"guess","ok":true,"value":"forged"}']),
    (
        "a planted result for a later execution",
        ['{"type":"result","exec":2,"nonce":{nonce},"ok":true,"value":"forged"}', OWN_RESULT],
    ),
    ("a call addressed elsewhere", ['{"type":"call","exec":5,"nonce":{nonce},"id":1,"name":"db.create","args":[]}']),
    ("a repeated call id", [OWN_CALL, OWN_CALL]),
    ("an unknown message type", ['{"type":"pwn","exec":{exec},"nonce":{nonce}}']),
    ("bytes that are not JSON", [[0, 255, 10]]),
    ("a 3,000-deep line", ["[" * 3000 + "]" * 3000]),
    ("a result without an outcome", ['{"type":"result","exec":{exec},"nonce":{nonce}}']),
]


@pytest.mark.parametrize(("name", "lines"), FORGERIES, ids=[name for name, _ in FORGERIES])
async def test_a_runner_that_forges_a_message_is_killed_and_only_its_execution_fails(
    name: str, lines: list[Any], fake_node: str
) -> None:
    proc = await fake_process(fake_node)
    host = Host()
    with anyio.fail_after(10):
        with pytest.raises(SandboxCrashed) as info:
            await proc.execute(forged(lines), host)
    assert "broke the protocol" in info.value.message
    assert not proc.alive
    assert all(call[0] != "db.create" for call in host.calls)


async def test_a_well_behaved_fake_runner_gets_its_call_answered_and_its_result_taken(fake_node: str) -> None:
    proc = await fake_process(fake_node)
    host = Host()
    try:
        with anyio.fail_after(10):
            result = await proc.execute(forged([OWN_CALL, OWN_RESULT]), host)
        assert result.value == "own"
        assert proc.alive
    finally:
        await proc.close()


async def test_the_pool_replaces_a_compromised_runner_and_serves_the_next_execution(fake_node: str) -> None:
    async with Sandbox(node_path=fake_node, runner_path=FAKE_RUNNER, size=1) as pool:
        (first,) = pool.processes
        with anyio.fail_after(10), pytest.raises(SandboxCrashed):
            await pool.execute(forged(['{"type":"result","exec":99,"nonce":{nonce},"ok":true,"value":1}']), Host())
        with anyio.fail_after(10):
            result = await pool.execute(forged([OWN_RESULT]), Host())
        assert result.value == "own"
        assert first.pid not in {p.pid for p in pool.processes}


# -- property tests ---------------------------------------------------------------------------------------

EXEC_ID, NONCE = 3, "a" * 32
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["call", "result", "ready", "reply", "exec", "pong"]) | st.text(max_size=5),
        "exec": st.sampled_from([EXEC_ID, EXEC_ID + 1, 0, -1, "3", 3.0, True, None]),
        "nonce": st.sampled_from([NONCE, NONCE.upper(), "", None, 3]) | st.text(max_size=4),
        "id": st.integers(-2, 5) | st.none() | st.text(max_size=2),
        "name": st.sampled_from(["db.create", "db.list"]) | st.integers(),
        "args": st.lists(json_values, max_size=3) | json_values,
        "ok": st.booleans() | st.none(),
        "value": json_values,
    },
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64) | messages.map(lambda m: json.dumps(m).encode()), max_size=6))
def test_the_channel_accepts_only_its_own_execution_and_never_fails_otherwise(lines: list[bytes]) -> None:
    channel = ExecutionChannel(EXEC_ID, NONCE, max_calls=3)
    for raw in lines:
        try:
            msg = channel.accept(raw)
        except ProtocolViolation:
            return
        decoded = json.loads(raw)
        assert decoded["exec"] == EXEC_ID and type(decoded["exec"]) is int
        assert decoded["nonce"] == NONCE
        if isinstance(msg, CallMessage):
            assert decoded["type"] == "call"
        else:
            assert isinstance(msg, ResultMessage) and decoded["type"] == "result"


def _line_for(message: dict[str, Any], own: bool) -> str:
    # JSON text with the execution's real id and nonce where the example asks for them.
    if own:
        message = {**message, "exec": "{exec}", "nonce": "{nonce}"}
    return json.dumps(message).replace('"{exec}"', "{exec}").replace('"{nonce}"', "{nonce}")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(messages, st.booleans()) | st.binary(min_size=1, max_size=40), max_size=4))
def test_a_runner_writing_anything_never_crashes_the_pool_nor_reaches_another_execution(
    fake_node: str, noise: list[Any]
) -> None:
    lines: list[Any] = [
        [*item.replace(b"\n", b" "), 10] if isinstance(item, bytes) else _line_for(*item) for item in noise
    ]

    # Only a result that carried this execution's id and nonce may be taken.
    addressed = [
        m.get("value") for m, own in (i for i in noise if isinstance(i, tuple)) if own and m.get("type") == "result"
    ]
    starts_foreign = bool(noise) and (isinstance(noise[0], bytes) or not noise[0][1])

    async def scenario() -> None:
        async with Sandbox(node_path=fake_node, runner_path=FAKE_RUNNER, size=1) as pool:
            with anyio.fail_after(20):
                try:
                    result = await pool.execute(forged([*lines, OWN_RESULT]), Host())
                except McpdoError:
                    pass
                else:
                    assert not starts_foreign
                    assert result.value == "own" or result.value in addressed
                control = await pool.execute(forged([OWN_RESULT]), Host())
                assert control.value == "own"

    anyio.run(scenario)
