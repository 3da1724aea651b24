"""A caller's kept runtime is rewound to its image (layers/runtime/engine.mjs): after each execution, the
engine's memory must be the image again, whatever the execution wrote or freed, and an image is only ever
kept of memory no guest code ran on, so an attacker can neither leave its data in memory the rewind keeps
nor steer which memory that is. Driven on the engine itself, in the order the runner uses it (the same attack
end to end through the runner, beside another caller: tests/security/test_parts_and_flush.py)."""

from __future__ import annotations

import json
import subprocess

from mcpdo.sandbox.pool import default_node_path, default_runner_path

CHECK = r"""
import { compileParts, keepImage, mayRewind, newRuntime, newWasm, rewindRuntime } from './engine.mjs'

const wasm = await newWasm(128 * 1024 * 1024)
const inst = newRuntime(wasm)
keepImage(inst) // as the runner does when a caller's request takes a fresh instance
const pristineStack = [...inst.image.stack]
const memory = () => Buffer.from(inst.wasmMemory.buffer)
const count = (marker) => {
  const bytes = memory()
  let n = 0
  for (let at = bytes.indexOf(marker); at >= 0; at = bytes.indexOf(marker, at + 1)) n++
  return n
}
const asImage = () => {
  const bytes = memory()
  const { pieces, stack, end } = inst.image
  const same = pieces.every(([offset, piece]) => bytes.subarray(offset, offset + piece.length).equals(piece))
  const zero = (from, to) => bytes.subarray(from, to).every((b) => b === 0)
  return same && zero(end, bytes.length) && zero(stack[1] - 512 * 1024, stack[1])
}
const run = (code) => {
  const r = inst.ctx.evalCode(code, 'attack.js')
  const out = r.error ? { error: inst.ctx.dump(r.error) } : { value: inst.ctx.dump(r.value) }
  ;(r.error || r.value).dispose()
  return out
}
const report = {}
// Leaves a large freed region in the heap (the shape that once steered where the stack was taken to be),
// its own data all over it, and deep stack frames.
const attack = (tag) => `
  let big = new ArrayBuffer(6 << 20); new Uint8Array(big).fill(0); big = null
  globalThis.kept = []
  for (let i = 0; i < 20000; i++) kept.push('${tag}-' + i + '-' + 'Q'.repeat(40))
  const deep = (n) => (n ? deep(n - 1) + 1 : 0)
  deep(500) + kept.length`
report.ran = run(attack('SECRET-A'))
report.seenDuring = count('SECRET-A')
report.mayRewind = mayRewind(inst)
rewindRuntime(inst)
report.leftAfterRewind = count('SECRET-A')
report.asImageAfterRewind = asImage()
// The caller now uses parts the image lacks: rewound exactly, parts compiled in, a new image kept.
run(attack('SECRET-B'))
rewindRuntime(inst, { wholeStack: true })
compileParts(inst, ['sdk', 'url'])
keepImage(inst)
report.leftInNewImage = count('SECRET-B')
report.stackStillTheStack = JSON.stringify(inst.image.stack) === JSON.stringify(pristineStack)
report.partsInImage = [...inst.image.compiled].sort()
run(attack('SECRET-C'))
rewindRuntime(inst)
report.leftAfterSecondImage = count('SECRET-C')
report.asImageAfterSecondRewind = asImage()
report.runsAgain = run('[1, 2, 3].map((n) => n * 2)')
console.log(JSON.stringify(report))
"""


def test_a_rewound_runtime_keeps_nothing_an_execution_wrote_or_freed() -> None:
    done = subprocess.run(
        [default_node_path(), "--input-type=module", "-e", CHECK],
        cwd=default_runner_path().parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["ran"] == {"value": 20500}
    assert report["seenDuring"] >= 20000  # its strings, and its source text
    assert report["mayRewind"] is True
    assert report["leftAfterRewind"] == 0
    assert report["asImageAfterRewind"] is True
    assert report["leftInNewImage"] == 0
    assert report["stackStillTheStack"] is True
    assert report["partsInImage"] == ["sdk", "url"]
    assert report["leftAfterSecondImage"] == 0
    assert report["asImageAfterSecondRewind"] is True
    assert report["runsAgain"] == {"value": [2, 4, 6]}
