"""A runner gets its three pipes and nothing else this process holds: a guest that escaped QuickJS into Node
must not find a descriptor the host was started with (a supervisor's pipe, a wrapper's `3<secrets`), nor
anything of its environment (its only variable is the allocator setting the host gives every runner)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from mcpdo import eventloop
from mcpdo.sandbox.pool import Sandbox
from mcpdo.settings import Settings


async def _runner_descriptors(settings: Settings) -> list[str]:
    sandbox = Sandbox.configured(settings)
    await sandbox.start()
    try:
        pid = sandbox.processes[0].pid
        return [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    finally:
        await sandbox.close()


@pytest.mark.parametrize("loop", [eventloop.runner, asyncio.Runner], ids=["uvloop", "asyncio"])
def test_a_descriptor_the_host_inherited_never_reaches_a_runner(
    tmp_path: Path, loop: Callable[[], asyncio.Runner]
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the launcher's secret")
    fd = os.open(secret, os.O_RDONLY)
    os.set_inheritable(fd, True)  # as a descriptor handed down by the process that started this one is
    try:
        settings = Settings.from_env({"MCPDO_DATA_DIR": str(tmp_path / "state"), "MCPDO_SANDBOX_POOL_SIZE": "1"})
        with loop() as runner:
            descriptors = runner.run(_runner_descriptors(settings))
    finally:
        os.close(fd)
    assert str(secret) not in descriptors
    assert not [target for target in descriptors if target.startswith("/") and target != "/dev/null"]


async def _runner_environments() -> list[tuple[dict[str, str], bytes]]:
    found = []
    for _ in range(2):
        sandbox = Sandbox(size=1)
        await sandbox.start()
        try:
            for proc in sandbox.processes:
                with open(f"/proc/{proc.pid}/environ", "rb") as fh:
                    found.append((proc.spawn_env, fh.read()))
        finally:
            await sandbox.close()
    return found


def test_a_secret_in_the_host_environment_never_reaches_a_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPDO_TEST_SECRET", "must-not-reach-the-runner")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "must-not-reach-the-runner-either")
    with eventloop.runner() as runner:
        environments = runner.run(_runner_environments())
    assert environments == [({"MALLOC_ARENA_MAX": "2"}, b"MALLOC_ARENA_MAX=2\0")] * 2
