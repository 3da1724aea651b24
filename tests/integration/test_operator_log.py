"""What a running server tells its operator on stderr (JSON lines off a terminal): one line per tool call
and per delivery, retry and dead letter, with ids, tenants, outcomes and durations, and none of the
scripts' data or error texts."""

from __future__ import annotations

from typing import Any

from tests.support.server import RunningServer
from tests.support.sync import call_as, call_tool, run_script, wait_for

MODULE = """---
$id: https://ops.test/flaky
---
on($.Job.done, async (data) => { await db.create('Seen', { note: data.note }) })
on($.Job.broken, async (data) => { throw new Error('handler saw ' + data.note) })
"""


def lines(server: RunningServer, message: str) -> list[dict[str, Any]]:
    return [line for line in server.log_lines() if line.get("message") == message]


def test_tool_calls_deliveries_retries_and_dead_letters_each_get_a_line(events_server: RunningServer) -> None:
    key = events_server.new_key("operator", "--tenant", "ops")
    failed, text = call_tool(events_server, key, {"module": MODULE})
    assert not failed, text
    run_script(events_server, "await send($.Job.done, { note: 'top secret one' })", key)
    run_script(events_server, "await send($.Job.broken, { note: 'top secret two' })", key)
    call_as(events_server, key, "throw new Error('top secret three')")
    wait_for(lambda: lines(events_server, "dead letter") and lines(events_server, "delivery"))

    calls = [line for line in lines(events_server, "tool call") if line.get("tenant") == "ops"]
    assert [line["kind"] for line in calls] == ["module", "script", "script", "script"]
    assert [line["outcome"] for line in calls] == ["ok", "ok", "ok", "error"]
    assert calls[-1]["errorKind"] == "ScriptRuntimeError" and calls[0]["caller"].startswith("key_")
    assert all(isinstance(line["durationMs"], float | int) for line in calls)

    [delivered] = [line for line in lines(events_server, "delivery") if line["eventType"] == "Job.done"]
    assert delivered["tenant"] == "ops" and delivered["attempt"] == 1
    retries = [line for line in lines(events_server, "delivery retry") if line["eventType"] == "Job.broken"]
    [dead] = [line for line in lines(events_server, "dead letter") if line["eventType"] == "Job.broken"]
    assert [line["attempt"] for line in retries] == [1, 2, 3] and dead["attempt"] == 4
    assert all(line["retryAt"] for line in retries) and dead["retryAt"] is None
    assert "top secret" not in "".join(events_server.output)
