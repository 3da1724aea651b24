"""Another caller, to check that an attack changed nothing of theirs: a key in its own tenant with records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.support.server import RunningServer
from tests.support.sync import call_as, call_tool


@dataclass
class Victim:
    server: RunningServer
    key: str
    records: list[dict[str, Any]]

    def call(self, script: str) -> tuple[bool, str]:
        """(is_error, text) of one `do` call as the victim."""
        return call_as(self.server, self.key, script)

    def call_tool(self, arguments: dict[str, str]) -> tuple[bool, str]:
        """(is_error, text) of one `do` call (script and/or module) as the victim."""
        return call_tool(self.server, self.key, arguments)

    def assert_untouched(self) -> None:
        """Their records are exactly as they were, nothing was added, and they are served normally."""
        is_error, text = self.call("await db.list('Secret', { sort: { n: 'asc' } })")
        assert not is_error, text
        assert json.loads(text) == self.records
        for type_name in ("Order", "Pwned", "Forged", "Leak"):
            is_error, text = self.call(f"await db.list('{type_name}')")
            assert (is_error, json.loads(text)) == (False, [])
        assert self.call("40 + 2") == (False, "42")


def make_victim(server: RunningServer, tenant: str = "victim") -> Victim:
    key = server.new_key(f"{tenant}-admin", "--tenant", tenant)
    victim = Victim(server, key, [])
    is_error, text = victim.call(
        "const a = await db.create('Secret', { n: 1, note: 'payroll' })\n"
        "const b = await db.create('Secret', { n: 2, note: 'keys' })\nreturn [a, b]"
    )
    assert not is_error, text
    victim.records = json.loads(text)
    return victim
