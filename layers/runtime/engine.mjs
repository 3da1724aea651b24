// QuickJS: a fresh runtime and context per execution, on a fresh WebAssembly instance, or on one that
// served the same caller before, rewound to the state it had before it first ran (see "Runtime images").
import fs from 'node:fs'
import { randomBytes, randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import * as acorn from 'acorn'
import { newQuickJSWASMModuleFromVariant, newVariant } from 'quickjs-emscripten-core'
import releaseSync from '@jitl/quickjs-wasmfile-release-sync'

const here = path.dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)

const WASM_PAGE = 65536
// Room above the QuickJS heap limit for the engine's own bookkeeping and stack; the wasm memory
// maximum is the hard cap that setMemoryLimit alone is not.
const WASM_HEADROOM = 48 * 1024 * 1024
export const MAX_STACK_BYTES = 256 * 1024

// The engine's data and its 5 MiB stack end below 6 MiB; its heap grows (memory.grow) as scripts allocate.
const INITIAL_PAGES = 96

// The release build declares a 16 MiB minimum memory, though its data and stack end near 5.1 MiB. V8 counts
// a memory's whole size against the heap's external-memory budget and collects garbage whenever instances
// dropped since the last collection add up to about 64 MiB: at 16 MiB each that was a full collection every
// four fresh instances (40% of the time spent making them). The import's minimum is rewritten in place
// (same byte length) to INITIAL_PAGES.
function withMinimumMemory(bytes, pages) {
  const leb = (at) => {
    let value = 0
    let shift = 0
    for (;;) {
      const byte = bytes[at++]
      value |= (byte & 0x7f) << shift
      shift += 7
      if (byte < 0x80) return [value, at]
    }
  }
  const skipName = (at) => {
    const [length, next] = leb(at)
    return next + length
  }
  let at = 8
  while (at < bytes.length) {
    const id = bytes[at]
    const [size, body] = leb(at + 1)
    if (id === 2) {
      let [count, entry] = leb(body)
      for (; count > 0; count--) {
        entry = skipName(skipName(entry))
        const kind = bytes[entry++]
        if (kind === 2) {
          const [declared, end] = leb(entry + 1)
          if (end - (entry + 1) !== 2 || declared < pages) {
            throw new Error('engine: the memory import is not as expected')
          }
          bytes[entry + 1] = 0x80 | (pages & 0x7f)
          bytes[entry + 2] = pages >> 7
          return bytes
        }
        if (kind === 0) entry = leb(entry)[1]
        else if (kind === 1) {
          // A table: its element type, then limits (flags, minimum, the maximum when flags say so).
          const flags = bytes[entry + 1]
          entry = leb(entry + 2)[1]
          if (flags & 1) entry = leb(entry)[1]
        }
        else if (kind === 3) entry += 2
        else throw new Error('engine: unexpected import kind')
      }
    }
    at = body + size
  }
  throw new Error('engine: the memory import was not found')
}

const wasmModule = new WebAssembly.Module(
  withMinimumMemory(fs.readFileSync(require.resolve('@jitl/quickjs-wasmfile-release-sync/wasm')), INITIAL_PAGES),
)

/**
 * `source` without comments and indentation, line breaks kept (the prelude relies on automatic semicolon
 * insertion): QuickJS compiles the prelude into every fresh context and the lazy parts on first use in an
 * execution, and its tokenizer's time grows with the text it scans, comments included.
 */
export function compactSource(source) {
  let out = ''
  let end = 0
  for (const token of acorn.tokenizer(source, { ecmaVersion: 'latest' })) {
    const gap = source.slice(end, token.start)
    if (end > 0 && gap) out += /[\n\r\u2028\u2029]/.test(gap) ? '\n' : ' '
    out += source.slice(token.start, token.end)
    end = token.end
  }
  return out
}

const guestSource = (file) => compactSource(fs.readFileSync(path.join(here, file), 'utf8'))
const preludeSource = guestSource('prelude.js')
// Parts of the guest environment compiled only when a script first touches them, each made compact once: on
// first use, or earlier while the runner is idle (`compactLazySources`), so the runner is ready sooner.
const LAZY_NAMES = new Set(['sdk', 'events', 'modules', 'console', 'dollar', 'timers', 'extras', 'url', 'locale'])
const lazyCompacted = new Map()

/** The source of lazy part `name`, or undefined for a name that is not one. */
export function lazySource(name) {
  if (!LAZY_NAMES.has(name)) return undefined
  let source = lazyCompacted.get(name)
  if (source === undefined) {
    source = guestSource(`lazy/${name}.js`)
    lazyCompacted.set(name, source)
  }
  return source
}

/** Compact the lazy parts not yet used, one per turn of the event loop (a request is served between two). */
export function compactLazySources() {
  const next = [...LAZY_NAMES].find((name) => !lazyCompacted.has(name))
  if (next === undefined) return
  lazySource(next)
  setImmediate(compactLazySources)
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve))
let nextWasmId = 1

/**
 * A WebAssembly instance of the engine with its own capped linear memory. It hosts one QuickJS runtime
 * at a time; the runner may host a later runtime of the same caller on it (`key`, `uses`).
 */
export async function newWasm(memoryBytes) {
  const maxPages = Math.max(INITIAL_PAGES, Math.ceil((memoryBytes + WASM_HEADROOM) / WASM_PAGE))
  const wasmMemory = new WebAssembly.Memory({ initial: INITIAL_PAGES, maximum: maxPages })
  const mod = await newQuickJSWASMModuleFromVariant(newVariant(releaseSync, { wasmModule, wasmMemory }))
  return { id: nextWasmId++, mod, wasmMemory, maxPages, memoryBytes, key: null, uses: 0 }
}

/**
 * A fresh QuickJS runtime and context on `wasm`, with the prelude evaluated. Host functions dispatch to
 * `inst.exec`, the execution currently bound to it (set by the runner), so this can run ahead of time.
 */
export function newRuntime(wasm) {
  const { memoryBytes } = wasm
  const rt = wasm.mod.newRuntime()
  rt.setMemoryLimit(memoryBytes)
  rt.setMaxStackSize(MAX_STACK_BYTES)
  const ctx = rt.newContext()
  // `used`: the lazy parts the guest loaded, so that the same caller's next runtime has them compiled ahead
  // (compileParts; `compiled` holds those compiled so far).
  const inst = { wasm, rt, ctx, memoryBytes, wasmMemory: wasm.wasmMemory, maxPages: wasm.maxPages, exec: null,
    settleFn: null, fireFn: null, compileFn: null, used: new Set(), compiled: new Set(), image: null }

  // A RangeError here is Node's own stack running out under deep native recursion in the engine: the
  // execution ends with the stack limit rather than carrying on with host state half-updated.
  const guarded = (fn) => (...handles) => {
    try {
      return fn(...handles)
    } catch (err) {
      if (err instanceof RangeError && inst.exec) inst.exec.nativeStackExhausted()
      throw err
    }
  }
  const callFn = ctx.newFunction('__mcpdo_call', guarded((nameH, argsH) => {
    const exec = inst.exec
    if (!exec) throw new Error('No execution is running')
    return exec.hostCall(ctx.getString(nameH), ctx.getString(argsH))
  }))
  const syncFn = ctx.newFunction('__mcpdo_sync', guarded((opH, aH, bH) => {
    const op = ctx.getString(opH)
    const a = aH === undefined ? undefined : ctx.getString(aH)
    // The guest's own lazy parts, with or without an execution: 'part' compiles one ahead, 'lazy' loads one
    // ('' when it was compiled ahead: the guest runs its compiled copy).
    if (op === 'lazy' || op === 'part') {
      const source = lazySource(a)
      if (source === undefined) return ctx.newString('(function () {})')
      if (op === 'part') inst.compiled.add(a)
      else inst.used.add(a)
      return ctx.newString(op === 'lazy' && inst.compiled.has(a) ? '' : source)
    }
    const exec = inst.exec
    if (!exec) return undefined
    const b = bH === undefined ? undefined : ctx.getString(bH)
    const out = exec.hostSync(op, a, b)
    return out === undefined ? undefined : ctx.newString(out)
  }))
  // Set once, before the runtime's image is kept (see keepImage): the engine's own flag that it is set lives in
  // the image, so every rewound runtime is interruptible; it asks whichever execution is bound.
  rt.setInterruptHandler(() => (inst.exec ? inst.exec.shouldInterrupt() : false))
  ctx.setProp(ctx.global, '__mcpdo_call', callFn)
  ctx.setProp(ctx.global, '__mcpdo_sync', syncFn)
  callFn.dispose()
  syncFn.dispose()

  // The prelude hands back [settle, fire, compileParts] and leaves no trace of them on the global object.
  const r = ctx.evalCode(preludeSource, 'prelude.js')
  if (r.error) {
    const info = ctx.dump(r.error)
    r.error.dispose()
    throw new Error(`prelude failed: ${JSON.stringify(info)}`)
  }
  inst.settleFn = ctx.getProp(r.value, 0)
  inst.fireFn = ctx.getProp(r.value, 1)
  inst.compileFn = ctx.getProp(r.value, 2)
  r.value.dispose()
  return inst
}

/**
 * Compile lazy parts into a runtime before its execution (the ones the caller's previous execution used, as
 * its `used` recorded them: names of the guest's own parts only, nothing else of that execution): the same
 * parts it would compile on first use, off the request path. Only on a runtime no guest code has run on
 * (prepared, or rewound exactly to such an image).
 */
export function compileParts(inst, parts) {
  const { ctx } = inst
  const missing = parts.filter((name) => !inst.compiled.has(name))
  if (!missing.length) return
  const namesH = ctx.newString(JSON.stringify(missing))
  const r = ctx.callFunction(inst.compileFn, ctx.undefined, namesH)
  namesH.dispose()
  if (r.error) {
    const info = ctx.dump(r.error)
    r.error.dispose()
    throw new Error(`compiling lazy parts failed: ${JSON.stringify(info)}`)
  }
  r.value.dispose()
}

// ----------------------------------------------------------------------------------------------
// Runtime images
//
// A caller's kept runtime is rewound for its next execution rather than rebuilt: its image, the engine's
// memory as it was when the runtime had been prepared on a fresh WebAssembly instance and before it ran
// anything (`keepImage`, only ever of memory no guest code has run on: a fresh instance, or one rewound
// exactly to such an image and given more lazy parts), is restored (`rewindRuntime`). Every
// byte of engine state is then as newly prepared (the QuickJS heap with its atoms, intrinsics, job queue,
// finalizers and symbol registry; the static data; the engine's flags): nothing the previous execution made
// survives. Restoring costs ~50 us, preparing a runtime again 1 to 1.7 ms (compiling the prelude and parts).
// The C stack is not copied: in a prepared, never-run instance it is the one long run of zero pages between
// the static data and the heap (5 MiB, of which preparing used the top few KiB), and on each rewind its top
// STACK_ZEROED bytes, twice what QuickJS's stack limit lets an execution use (MAX_STACK_BYTES), are
// zeroed again, all of it when the page below them is not zero. Pages above the image (the heap's unused top,
// and what the execution grew) are zeroed, as fresh pages are.
// The runtime's handles on the Node side (rt, ctx, the prelude's functions) were made before the image and
// stay valid; what an execution makes on this side is freed before it ends cleanly, and only a clean end
// keeps the instance.
const IMAGE_PAGE = 4096
const ZERO_PAGE = Buffer.alloc(IMAGE_PAGE)
// The engine's stack is 5 MiB: an image whose longest zero run is shorter was not taken of a never-run runtime.
const MIN_STACK_GAP = 4 * 1024 * 1024
const STACK_ZEROED = 512 * 1024
// Memory an execution grew past the image is zeroed at each rewind: past this, the instance is dropped instead
// (an instance kept for its caller grew at most this far, so it stays well below its limit).
const MAX_REWIND_GROWTH = 8 * 1024 * 1024

const isZero = (memory, at) => ZERO_PAGE.compare(memory, at, at + IMAGE_PAGE) === 0
const ZERO_CHUNK = Buffer.alloc(16 * IMAGE_PAGE)

// Zero the 64 KiB chunks of [from, to) that are not zero: memory an execution never touched is not written
// (it would become resident for nothing).
function zeroWritten(memory, from, to) {
  for (let at = from; at < to; at += ZERO_CHUNK.length) {
    const stop = Math.min(to, at + ZERO_CHUNK.length)
    if (ZERO_CHUNK.compare(memory, at, stop, 0, stop - at) !== 0) memory.fill(0, at, stop)
  }
}

// The stack's zero run, as pages [start, end): the same in every instance of this engine build, so it is found
// once (on the first image) and only checked afterwards; keeping an image then costs tens of microseconds.
let stackGap = null

function findStackGap(zero, end) {
  let gap = [0, 0]
  for (let p = 0; p < end;) {
    if (!zero(p)) {
      p += 1
      continue
    }
    let q = p + 1
    while (q < end && zero(q)) q += 1
    if (q - p > gap[1] - gap[0]) gap = [p, q]
    p = q
  }
  if ((gap[1] - gap[0]) * IMAGE_PAGE < MIN_STACK_GAP) throw new Error('engine: no stack gap in the image')
  return gap
}

/** Keep the image of `inst`, prepared on a fresh instance and never run: `rewindRuntime` restores it. */
export function keepImage(inst) {
  const bytes = Buffer.from(inst.wasmMemory.buffer)
  const zero = (p) => isZero(bytes, p * IMAGE_PAGE)
  let end = bytes.length / IMAGE_PAGE
  while (end >= 16 && ZERO_CHUNK.compare(bytes, (end - 16) * IMAGE_PAGE, end * IMAGE_PAGE) === 0) end -= 16
  while (end > 0 && zero(end - 1)) end -= 1
  stackGap = stackGap || findStackGap(zero, end)
  const [gapStart, gapEnd] = stackGap
  // Where it was in the first image: zero at both ends, between the static data and the stack's used top.
  if (!(gapEnd < end && zero(gapStart) && zero(gapEnd - 1) && !zero(gapEnd) && (gapStart === 0 || !zero(gapStart - 1)))) {
    throw new Error('engine: the stack is not where the first image had it')
  }
  const piece = (from, to) => [from * IMAGE_PAGE, new Uint8Array(bytes.subarray(from * IMAGE_PAGE, to * IMAGE_PAGE))]
  inst.image = {
    pieces: [piece(0, gapStart), piece(gapEnd, end)],
    stack: [gapStart * IMAGE_PAGE, gapEnd * IMAGE_PAGE],
    end: end * IMAGE_PAGE,
    compiled: new Set(inst.compiled),
  }
}

/**
 * Whether `inst` may be rewound: it has an image, its execution grew the memory by at most MAX_REWIND_GROWTH,
 * and quickjs-emscripten made none of the handles it caches lazily since the image (they would point into
 * memory the rewind frees; the runner uses none of the calls that make them).
 */
export function mayRewind(inst) {
  const { image, ctx } = inst
  return Boolean(image) && inst.wasmMemory.buffer.byteLength - image.end <= MAX_REWIND_GROWTH &&
    [ctx._BigInt, ctx._Symbol, ctx._SymbolIterator, ctx._SymbolAsyncIterator].every((h) => h === undefined)
}

/** Whether the image of `inst` has every part in `parts` compiled. */
export function imageHas(inst, parts) {
  return parts.every((name) => inst.image.compiled.has(name))
}

/**
 * `inst` as its image has it, ready for its next execution (it must have ended cleanly, and mayRewind hold).
 * `wholeStack`: zero all of the stack, so that the memory is the image exactly (before a new image is kept).
 */
export function rewindRuntime(inst, { wholeStack = false } = {}) {
  const memory = Buffer.from(inst.wasmMemory.buffer)
  const { pieces, stack, end } = inst.image
  for (const [offset, bytes] of pieces) memory.set(bytes, offset)
  const zeroedFrom = wholeStack ? stack[0] : Math.max(stack[0], stack[1] - STACK_ZEROED)
  zeroWritten(memory, zeroedFrom, stack[1])
  const below = zeroedFrom - IMAGE_PAGE
  if (below >= stack[0] && !isZero(memory, below)) memory.fill(0, stack[0], zeroedFrom)
  zeroWritten(memory, end, memory.length)
  inst.exec = null
  inst.used = new Set()
  inst.compiled = new Set(inst.image.compiled)
  return inst
}

/** A fresh wasm instance with a prepared runtime; built in two steps when `yieldBetween`. */
export async function buildInstance(memoryBytes, { yieldBetween = false } = {}) {
  const wasm = await newWasm(memoryBytes)
  if (yieldBetween) await nextTurn()
  return newRuntime(wasm)
}

export function hostRandomUUID() {
  return randomUUID()
}

export function hostRandomBytes(n) {
  return JSON.stringify(Array.from(randomBytes(Math.max(0, Math.min(65536, n | 0)))))
}

/** `n` doubles in [0, 1) with 53 random bits each, from the CSPRNG, as a JSON array (Math.random's pool). */
export function hostRandomDoubles(n) {
  const count = Math.max(1, Math.min(1024, n | 0))
  const bytes = randomBytes(count * 8)
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, count * 2)
  const out = new Array(count)
  for (let i = 0; i < count; i++) out[i] = ((words[2 * i] >>> 5) * 67108864 + (words[2 * i + 1] >>> 6)) / 9007199254740992
  return JSON.stringify(out)
}

