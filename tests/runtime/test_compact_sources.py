"""The guest sources are compiled compacted (layers/runtime/engine.mjs `compactSource`): the compacted text
must mean exactly what the file says, for every file the runtime compiles into a guest."""

from __future__ import annotations

import json
import subprocess

from mcpdo.sandbox.pool import default_node_path, default_runner_path

# Parses each file and its compacted text with acorn and compares the trees without positions; also checks
# that the standalone tokenizer the compaction uses splits the file as the parser does (regex or division),
# and that no HTML-like comment (which acorn and QuickJS may read differently) is there to be dropped.
CHECK = r"""
import fs from 'node:fs'
import * as acorn from 'acorn'
import { compactSource } from './engine.mjs'
const strip = (node) => JSON.stringify(node, (key, value) => (key === 'start' || key === 'end' ? undefined : value))
const files = ['prelude.js', ...fs.readdirSync('lazy').filter((f) => f.endsWith('.js')).map((f) => 'lazy/' + f)]
const report = {}
for (const file of files) {
  const source = fs.readFileSync(file, 'utf8')
  const compact = compactSource(source)
  const parse = (text) => acorn.parse(text, { ecmaVersion: 'latest' })
  const parserTokens = []
  acorn.parse(source, { ecmaVersion: 'latest', onToken: (t) => parserTokens.push([t.start, t.end]) })
  const tokens = [...acorn.tokenizer(source, { ecmaVersion: 'latest' })].map((t) => [t.start, t.end])
  report[file] = {
    sameTree: strip(parse(source)) === strip(parse(compact)),
    sameTokens: JSON.stringify(tokens) === JSON.stringify(parserTokens.slice(0, -1)),
    htmlComment: /<!--|-->/.test(source),
    shorter: compact.length < source.length,
  }
}
console.log(JSON.stringify(report))
"""


def test_every_guest_source_means_the_same_compacted() -> None:
    runtime = default_runner_path().parent
    done = subprocess.run(
        [default_node_path(), "--input-type=module", "-e", CHECK],
        cwd=runtime,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    assert "prelude.js" in report and len(report) >= 10, report
    for file, checks in report.items():
        assert checks == {"sameTree": True, "sameTokens": True, "htmlComment": False, "shorter": True}, file
