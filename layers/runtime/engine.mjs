// QuickJS instances: one fresh WebAssembly instance, runtime and context per execution, never reused.
import fs from 'node:fs'
import { randomBytes, randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import { newQuickJSWASMModuleFromVariant, newVariant } from 'quickjs-emscripten-core'
import releaseSync from '@jitl/quickjs-wasmfile-release-sync'

const here = path.dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)

const WASM_PAGE = 65536
// Room above the QuickJS heap limit for the engine's own bookkeeping and stack; the wasm memory
// maximum is the hard cap that setMemoryLimit alone is not.
const WASM_HEADROOM = 48 * 1024 * 1024
export const MAX_STACK_BYTES = 256 * 1024
const MAX_CALL_ARGS_CHARS = 8 * 1024 * 1024

const wasmModule = new WebAssembly.Module(
  fs.readFileSync(require.resolve('@jitl/quickjs-wasmfile-release-sync/wasm')),
)
const preludeSource = fs.readFileSync(path.join(here, 'prelude.js'), 'utf8')
// Parts of the guest environment compiled only when a script first touches them.
export const lazySources = Object.fromEntries(['console', 'dollar', 'timers', 'extras', 'url', 'locale'].map(
  (name) => [name, fs.readFileSync(path.join(here, 'lazy', `${name}.js`), 'utf8')]))
// The engine is built with a 16 MiB initial memory (256 pages); it grows up to maxPages.
const INITIAL_PAGES = 256

/**
 * An instance owns its wasm memory. Host functions dispatch to `inst.exec`, the execution
 * currently bound to it (set by the runner), so the prelude can be evaluated ahead of time.
 */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve))

export async function buildInstance(memoryBytes, { yieldBetween = false } = {}) {
  const maxPages = Math.max(INITIAL_PAGES, Math.ceil((memoryBytes + WASM_HEADROOM) / WASM_PAGE))
  const wasmMemory = new WebAssembly.Memory({ initial: INITIAL_PAGES, maximum: maxPages })
  const mod = await newQuickJSWASMModuleFromVariant(newVariant(releaseSync, { wasmModule, wasmMemory }))
  if (yieldBetween) await nextTurn()
  const rt = mod.newRuntime()
  rt.setMemoryLimit(memoryBytes)
  rt.setMaxStackSize(MAX_STACK_BYTES)
  const ctx = rt.newContext()
  const inst = { mod, rt, ctx, memoryBytes, wasmMemory, maxPages, exec: null, settleFn: null, fireFn: null }

  const callFn = ctx.newFunction('__mcpdo_call', (nameH, argsH) => {
    const exec = inst.exec
    if (!exec) throw new Error('No execution is running')
    return exec.hostCall(ctx.getString(nameH), ctx.getString(argsH))
  })
  const syncFn = ctx.newFunction('__mcpdo_sync', (opH, aH, bH) => {
    const exec = inst.exec
    if (!exec) return undefined
    const op = ctx.getString(opH)
    const a = aH === undefined ? undefined : ctx.getString(aH)
    const b = bH === undefined ? undefined : ctx.getString(bH)
    const out = exec.hostSync(op, a, b)
    return out === undefined ? undefined : ctx.newString(out)
  })
  // Built ahead of time in steps, so that a request arriving meanwhile is not held up by the whole build.
  if (yieldBetween) await nextTurn()
  ctx.setProp(ctx.global, '__mcpdo_call', callFn)
  ctx.setProp(ctx.global, '__mcpdo_sync', syncFn)
  callFn.dispose()
  syncFn.dispose()

  const r = ctx.evalCode(preludeSource, 'prelude.js')
  if (r.error) {
    const info = ctx.dump(r.error)
    r.error.dispose()
    throw new Error(`prelude failed: ${JSON.stringify(info)}`)
  }
  r.value.dispose()
  inst.settleFn = ctx.getProp(ctx.global, '__mcpdo_settle')
  inst.fireFn = ctx.getProp(ctx.global, '__mcpdo_fire')
  const cleanup = ctx.evalCode('delete globalThis.__mcpdo_settle; delete globalThis.__mcpdo_fire;', 'prelude.js')
  if (cleanup.error) cleanup.error.dispose()
  else cleanup.value.dispose()
  return inst
}

export function hostRandomUUID() {
  return randomUUID()
}

export function hostRandomBytes(n) {
  return JSON.stringify(Array.from(randomBytes(Math.max(0, Math.min(65536, n | 0)))))
}

export { MAX_CALL_ARGS_CHARS }
