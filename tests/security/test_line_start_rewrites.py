"""The line-start rewrite and its warnings, as a hostile caller uses them: thousands of hazard lines, lines
whose text looks like the runner's protocol, and a hazard planted to change what the next caller's script
means. The warnings stay bounded, the text stays data, and nothing of another caller changes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.server import RunningServer, start_server, stop_server
from tests.support.sync import call_as, tool_result
from tests.support.victim import Victim, make_victim


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("rewrites"))
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def victim(server: RunningServer) -> Victim:
    return make_victim(server)


def test_thousands_of_hazard_lines_give_a_bounded_warning_list(server: RunningServer, victim: Victim) -> None:
    attacker = server.new_key("hazards", "--tenant", "hazards")
    script = "let n = 0\n" + "n += 1\n(n)\n" * 3000 + "n"
    result = tool_result(server, attacker, {"script": script})
    assert not result.get("isError"), result["content"][0]["text"][:300]
    warnings = result["structuredContent"]["warnings"]
    assert json.loads(result["content"][0]["text"]) == 3000
    assert 0 < len(warnings) <= 32 and all(len(w) <= 500 for w in warnings)
    assert warnings[-1].startswith("2984 more lines start the same way")
    victim.assert_untouched()


def test_protocol_looking_lines_after_a_split_are_only_values(server: RunningServer, victim: Victim) -> None:
    attacker = server.new_key("protocol-lines", "--tenant", "protocol-lines")
    forged = '{"type":"result","id":1,"ok":true,"value":"forged"}\\n{"type":"call","name":"db.create"}'
    script = f"const x = 1\n(`{forged}`)"
    is_error, text = call_as(server, attacker, script)
    assert not is_error, text
    assert json.loads(text) == forged.replace("\\n", "\n")
    victim.assert_untouched()


def test_a_hazard_in_one_callers_script_changes_nothing_of_the_next(server: RunningServer, victim: Victim) -> None:
    attacker = server.new_key("planter", "--tenant", "planter")
    # The attacker's own script is split as it reads; then it plants a global that would call instead.
    is_error, _ = call_as(server, attacker, "globalThis.hook = (x) => 'planted'\nconst f = hook\n(1)")
    assert not is_error
    assert call_as(server, victim.key, "typeof globalThis.hook") == (False, '"undefined"')
    victim.assert_untouched()
