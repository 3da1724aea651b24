"""Who takes the next sandbox runner: per-caller caps, the anonymous share, keys first, least-served first."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mcpdo.adapters.file_secrets import FileSecrets
from mcpdo.adapters.httpx_web import HttpxWebClient
from mcpdo.errors import SandboxBusy
from mcpdo.execution import Executor, Outside, caller_of
from mcpdo.identity import Identity
from mcpdo.modules import identity_of, owner_of
from mcpdo.netguard import Allowlist
from mcpdo.ports import Event, StoredModule
from mcpdo.sandbox import ExecutionRequest, ExecutionResult, HostCall
from mcpdo.sandbox.admission import Admission, Caller, Caps
from mcpdo.services import ServiceRegistry
from mcpdo.settings import Settings
from mcpdo.vocabulary import Vocabulary, default_schemas_dir

ALICE = Caller.key("t1\x1fapiKey\x1falice")
BOB = Caller.key("t1\x1fapiKey\x1fbob")
HOME = Caller.anonymous("203.0.113.7")
CAFE = Caller.anonymous("198.51.100.9")
SHOP = Caller.anonymous("192.0.2.44")


def test_an_anonymous_address_past_its_cap_waits_while_a_key_behind_it_runs() -> None:
    admission = Admission(Caps(per_key=4, per_anonymous=1, anonymous_runners=3))
    first = admission.enqueue(HOME)
    assert admission.choose(1) == [first]
    second = admission.enqueue(HOME)
    key = admission.enqueue(ALICE)
    assert admission.choose(5) == [key]
    assert admission.waiting == (second,)
    assert admission.blocked(HOME) == "caller"
    admission.finish(HOME)
    assert admission.choose(1) == [second]


def test_all_anonymous_callers_together_never_run_more_than_their_share() -> None:
    admission = Admission(Caps(per_key=4, per_anonymous=1, anonymous_runners=2))
    tickets = [admission.enqueue(source) for source in (HOME, CAFE, SHOP)]
    assert admission.choose(10) == tickets[:2]
    assert admission.anonymous_running == 2
    assert admission.blocked(SHOP) == "anonymous"
    assert admission.demand() == 0
    admission.finish(CAFE)
    assert admission.choose(10) == [tickets[2]]


def test_a_key_is_served_before_anonymous_callers_that_arrived_earlier() -> None:
    admission = Admission(Caps(per_key=4, per_anonymous=1, anonymous_runners=3))
    early = [admission.enqueue(HOME), admission.enqueue(CAFE)]
    late = admission.enqueue(ALICE)
    assert admission.choose(1) == [late]
    assert admission.choose(2) == early


def test_when_a_runner_frees_the_key_running_the_fewest_executions_goes_first() -> None:
    admission = Admission(Caps(per_key=4, per_anonymous=1, anonymous_runners=1))
    for _ in range(2):
        admission.enqueue(ALICE)
    assert [t.caller for t in admission.choose(2)] == [ALICE, ALICE]
    alice_again = admission.enqueue(ALICE)
    bob = admission.enqueue(BOB)
    assert admission.choose(1) == [bob]
    assert admission.choose(1) == [alice_again]


def test_a_key_past_its_cap_keeps_its_turn_and_runs_when_one_of_its_own_finishes() -> None:
    admission = Admission(Caps(per_key=2, per_anonymous=1, anonymous_runners=1))
    running = [admission.enqueue(ALICE), admission.enqueue(ALICE)]
    assert admission.choose(2) == running
    queued = [admission.enqueue(ALICE), admission.enqueue(ALICE)]
    assert admission.choose(3) == []
    assert admission.blocked(ALICE) == "caller"
    admission.finish(ALICE)
    assert admission.choose(3) == [queued[0]]
    assert admission.waiting == (queued[1],)


def test_demand_counts_only_the_waiters_their_caps_let_run() -> None:
    admission = Admission(Caps(per_key=2, per_anonymous=1, anonymous_runners=2))
    for caller in (ALICE, ALICE, ALICE, BOB, HOME, HOME, CAFE, SHOP):
        admission.enqueue(caller)
    # Alice 2 (cap), Bob 1, anonymous: one each for three addresses, but two for all of them together.
    assert admission.demand() == 5
    assert len(admission.choose(10)) == 5
    assert admission.demand() == 0


def test_local_callers_have_no_cap_and_are_not_anonymous() -> None:
    admission = Admission(Caps(per_key=1, per_anonymous=1, anonymous_runners=1))
    tickets = [admission.enqueue(Caller.local()) for _ in range(5)]
    assert admission.blocked(Caller.local()) is None
    assert admission.choose(5) == tickets
    assert admission.anonymous_running == 0


def test_a_withdrawn_request_is_never_chosen() -> None:
    admission = Admission(Caps())
    gone = admission.enqueue(ALICE)
    kept = admission.enqueue(BOB)
    admission.withdraw(gone)
    admission.withdraw(gone)
    assert admission.choose(2) == [kept]
    assert admission.running(ALICE) == 0


def test_caps_are_clamped_so_that_no_caller_can_hold_every_runner_of_the_grown_pool() -> None:
    assert Caps(per_key=4, per_anonymous=1, anonymous_runners=3).within(4) == Caps(3, 1, 3)
    assert Caps(per_key=4, per_anonymous=2, anonymous_runners=9).within(2) == Caps(1, 1, 1)
    assert Caps(per_key=4).within(1) == Caps(1, 1, 1)
    with pytest.raises(ValueError, match=r"Caps\.per_key is 0: it must be at least 1"):
        Caps(per_key=0)


def test_each_busy_reason_has_its_own_text_naming_the_setting() -> None:
    assert SandboxBusy("runners", 10_000).text == (
        "The sandbox is busy: no runner became free within 10000 ms (MCPDO_SANDBOX_WAIT_MS); try again"
    )
    assert SandboxBusy("key", 2000, 3).text == (
        "Too many concurrent executions for this key: at most 3 at a time (MCPDO_CONCURRENCY_PER_KEY), "
        "and none finished within 2000 ms (MCPDO_SANDBOX_WAIT_MS); try again when one has finished"
    )
    assert SandboxBusy("source", 2000, 1).text.startswith(
        "Too many concurrent executions for anonymous callers from this address: at most 1 at a time "
        "(MCPDO_CONCURRENCY_PER_ANONYMOUS)"
    )
    assert SandboxBusy("anonymous", 2000, 1).text.startswith(
        "The sandbox is busy with anonymous executions: at most 1 at a time for all anonymous callers "
        "together (MCPDO_ANONYMOUS_RUNNERS)"
    )


def test_fair_sharing_settings_default_to_room_for_others_on_the_pool(tmp_path: Path) -> None:
    settings = Settings.from_env({"MCPDO_DATA_DIR": str(tmp_path), "MCPDO_SANDBOX_POOL_SIZE": "2"})
    assert (
        settings.sandbox_pool_max,
        settings.sandbox_wait_ms,
        settings.concurrency_per_key,
        settings.concurrency_per_anonymous,
        settings.anonymous_runners,
    ) == (4, 10_000, 4, 1, 1)
    bigger = Settings.from_env({"MCPDO_DATA_DIR": str(tmp_path), "MCPDO_SANDBOX_POOL_SIZE": "8"})
    assert (bigger.sandbox_pool_max, bigger.anonymous_runners) == (16, 7)
    tuned = Settings.from_env(
        {
            "MCPDO_DATA_DIR": str(tmp_path),
            "MCPDO_SANDBOX_POOL_SIZE": "2",
            "MCPDO_SANDBOX_POOL_MAX": "6",
            "MCPDO_SANDBOX_WAIT_MS": "0",
            "MCPDO_CONCURRENCY_PER_KEY": "2",
            "MCPDO_CONCURRENCY_PER_ANONYMOUS": "2",
            "MCPDO_ANONYMOUS_RUNNERS": "5",
        }
    )
    assert (
        tuned.sandbox_pool_max,
        tuned.sandbox_wait_ms,
        tuned.concurrency_per_key,
        tuned.concurrency_per_anonymous,
        tuned.anonymous_runners,
    ) == (6, 0, 2, 2, 5)


class RecordingSandbox:
    """Stands in for the pool: records whom each execution counts against."""

    def __init__(self) -> None:
        self.callers: list[Caller | None] = []

    async def execute(
        self, request: ExecutionRequest, host: HostCall, *, caller: Caller | None = None
    ) -> ExecutionResult:
        self.callers.append(caller)
        return ExecutionResult(value=None, is_undefined=True, logs=(), duration_ms=0.0)


async def _unused(*args: object) -> Any:
    raise AssertionError("not called")


@pytest.mark.anyio
async def test_the_executor_counts_scripts_against_the_key_or_the_anonymous_address_and_handlers_as_the_owner(
    tmp_path: Path,
) -> None:
    sandbox = RecordingSandbox()
    executor = Executor(
        Settings(data_dir=tmp_path),
        sandbox,
        store=None,
        publish=_unused,  # type: ignore[arg-type]
        resolve_import=_unused,
        outside=Outside(
            models=None,
            web=HttpxWebClient(
                allow=Allowlist(), connect_timeout_s=1, read_timeout_s=1, max_response_bytes=1, user_agent="test"
            ),
            services=ServiceRegistry.with_presets(),
            secrets=FileSecrets(None, {}),
            vocabulary=Vocabulary.at(default_schemas_dir(None)),
        ),
    )
    alice = Identity.for_roles(id="key_alice", tenant="t1", auth_type="apiKey", roles=("admin",))
    await executor.run_script("1", alice)
    await executor.run_script("1", replace(Identity.anonymous(), source="203.0.113.7"))
    await executor.run_script("1", Identity.anonymous())
    await executor.evaluate_module("1", alice, module_id="https://mcpdo.local/m")
    module = StoredModule(
        tenant="t1",
        id="https://mcpdo.local/m",
        version=1,
        type=None,
        source="",
        code="1",
        owner=owner_of(alice),
        exports=(),
        metadata={},
        created_at="2025-01-01T00:00:00Z",
    )
    event = Event(
        id="evt_1",
        type="Order.created",
        data={},
        source="script",
        time="2025-01-01T00:00:00Z",
        tenant="t1",
        correlation_id="evt_1",
    )
    await executor.invoke_handler(module, identity_of(module.owner), 0, ({}, event.to_json()), parent=event)
    key = Caller.key("t1\x1fapiKey\x1fkey_alice")
    assert sandbox.callers == [key, Caller.anonymous("203.0.113.7"), Caller.anonymous("local"), key, key]
    assert caller_of(alice) == key
