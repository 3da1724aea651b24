"""`make conformance`: the official MCP conformance suite (pinned in package.json) against a fresh
`mcpdo serve` on a free loopback port, every scenario that applies to a server of tools and resources.

Scenarios that need the suite's own fixture server (tools named `test_*`, resources `test://...`, prompts,
sampling, elicitation, logging, completions, SSE streams) do not apply to a server with one tool and its
docs as resources: they are listed below with the reason, and `--list` prints both sets. Exits non-zero
when any applicable check fails, or when the pinned suite no longer knows a scenario named here.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.server import start_server, stop_server  # noqa: E402

BIN = Path(sys.executable).parent
RESULT = re.compile(r"Passed: (\d+)/(\d+), (\d+) failed")
SUITE = HERE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"

APPLIES = (
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "dns-rebinding-protection",
)
NEEDS_THE_SUITES_FIXTURES = {
    "tools-call-*": "call the suite's own tools (test_simple_text, test_image_content, ...)",
    "resources-read-*, resources-templates-read": "read the suite's resources (test://static-text, ...)",
    "resources-subscribe, resources-unsubscribe": "subscriptions: a stateless server has no session to notify",
    "prompts-*": "prompts: this server has none",
    "logging-set-level": "the logging capability: not offered (logs go to the operator, not the client)",
    "completion-complete": "completions: not offered",
    "elicitation-*, tools-call-sampling, tools-call-elicitation": "server-to-client requests: JSON responses",
    "server-sse-*": "SSE streams: the server answers with JSON (stateless Streamable HTTP)",
    "json-schema-2020-12": "a fixture tool with $defs in its schema",
}


def main() -> int:
    if "--list" in sys.argv:
        print("applies:", ", ".join(APPLIES))
        for scenarios, reason in NEEDS_THE_SUITES_FIXTURES.items():
            print(f"does not apply: {scenarios}: {reason}")
        return 0
    known = _known_scenarios()
    missing = [name for name in APPLIES if name not in known]
    if missing:
        print(f"the pinned suite has no scenario {', '.join(missing)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mcpdo-conformance-") as state:
        server = start_server(Path(state))
        try:
            results = {name: _run(server.url, name) for name in APPLIES}
        finally:
            stop_server(server)
    width = max(map(len, results))
    for name, (ok, summary) in results.items():
        print(f"{name:<{width}}  {'pass' if ok else 'FAIL'}  {summary}")
    failed = [name for name, (ok, _) in results.items() if not ok]
    print(f"{len(results) - len(failed)}/{len(results)} applicable scenarios pass")
    return 1 if failed else 0


def _node() -> list[str]:
    return [str(BIN / "node"), str(SUITE)]


def _known_scenarios() -> str:
    listed = subprocess.run([*_node(), "list", "--server"], capture_output=True, text=True, timeout=60, check=True)
    return listed.stdout


def _run(url: str, scenario: str) -> tuple[bool, str]:
    done = subprocess.run(
        [*_node(), "server", "--url", url, "--scenario", scenario],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = RESULT.findall(done.stdout)
    if not found:
        print(done.stdout + done.stderr, file=sys.stderr)
        return False, "no result line"
    passed_checks, checks, failed = (int(n) for n in found[-1])
    ok = done.returncode == 0 and checks > 0 and failed == 0 and passed_checks == checks
    if not ok:
        print(done.stdout + done.stderr, file=sys.stderr)
    return ok, f"{passed_checks}/{checks} checks"


if __name__ == "__main__":
    sys.exit(main())
