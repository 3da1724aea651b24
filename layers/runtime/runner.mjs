// mcpdo sandbox runner: JSON lines on stdin/stdout, one execution at a time.
//
// Every line either way is the JSON of one whole message (guest text is only ever a JSON string value inside
// it, never spliced into a line), and every message of an execution carries the execution's id and the
// nonce the host chose for it. Guest code never sees the nonce, so nothing it writes can address another
// execution; the host treats any line it did not expect as a compromised runner.
//
// In:  {"type":"exec","id":n,"nonce":"...","key":"..."|null,"code":"...","kind":"script"|"module","readonly":bool,
//       "user":{...},"limits":{...},"preload":[{"id":"...","code":"..."}],"invoke":{"index":n,"args":[...]}|null}
//      {"type":"reply","exec":n,"id":callId,"ok":true,"value":json}
//      {"type":"reply","exec":n,"id":callId,"ok":false,"error":"msg","name"?:"..."}
// Out: {"type":"ready"}
//      {"type":"call","exec":n,"nonce":"...","id":callId,"name":"db.get","args":[...]}
//      {"type":"result","exec":n,"nonce":"...","ok":true,"undefined":bool,"value":json,"exports":[...],"logs":[...],
//       "constructed":[[type,[key,...]],...],"durationMs":ms,"warm":key|null}
//      {"type":"result","exec":n,"nonce":"...","ok":false,"error":{kind,message,...},"logs":[...],"durationMs":ms,
//       "warm":key|null,"constructed"?:[...]}
// `constructed`: what `$.Type(props)` calls were given (type name, own keys), distinct, bounded; for hints.
// A line from the host that this runner cannot use is reported on stderr and dropped: stdout carries only
// messages of the execution that is running.
// `key`: executions with the same key may run one after another on the same wasm instance (each on its
// runtime rewound to the state it had before it first ran); null: always a fresh instance. `warm`: the key
// whose next execution this process can start on a kept instance (a hint for routing).
import {
  buildInstance, compactLazySources, compileParts, hostRandomBytes, hostRandomDoubles, hostRandomUUID, imageHas,
  keepImage, mayRewind, rewindRuntime,
} from './engine.mjs'
import { valueProblem, wellFormed } from './values.mjs'
import { prepare, SourceSyntaxError } from './transform.mjs'

// --debug: each result names the wasm instance that ran it ("instance": "<pid>.<n>"), for tests.
const DEBUG = process.argv.includes('--debug')

process.removeAllListeners('warning')
process.on('warning', () => {})

// stdout carries protocol lines only: anything else that prints goes to stderr.
const writeOut = process.stdout.write.bind(process.stdout)
const toStderr = (...args) => process.stderr.write(args.map(String).join(' ') + '\n')
for (const level of ['log', 'info', 'warn', 'error', 'debug', 'trace', 'dir']) console[level] = toStderr
process.stdout.write = (chunk, ...rest) => process.stderr.write(chunk, ...rest)

function sendObj(obj) {
  writeOut(JSON.stringify(obj) + '\n')
}

// Every limit comes from the host with the request (shared/mcpdo/sandbox/types.py Limits); none has a default
// here. Code sizes are checked by the host before the code is sent.
const LIMIT_NAMES = ['timeout_ms', 'memory_bytes', 'max_result_bytes', 'max_sdk_calls', 'max_log_bytes',
  'max_call_bytes', 'max_value_depth']
const MiB = 1024 * 1024

// The request's limits, or the name of the first one missing or not a positive integer.
function readLimits(raw) {
  const out = {}
  for (const key of LIMIT_NAMES) {
    const v = raw && typeof raw === 'object' ? raw[key] : undefined
    if (!Number.isSafeInteger(v) || v <= 0) return { missing: key }
    out[key] = v
  }
  return { limits: out }
}

function fmtMiB(bytes) {
  const m = bytes / MiB
  return Number.isInteger(m) ? `${m} MiB` : `${m.toFixed(1)} MiB`
}

// ----------------------------------------------------------------------------------------------
// Instances

// Fresh wasm instances prepared ahead for anyone (each serves one execution first): taking one for a
// request costs nothing; the next ones are built in steps between requests and host-call replies (one fewer
// while an instance is kept for a caller: `aheadTarget`).
const AHEAD = 2
// The memory limit of instances prepared ahead, from the host (`--memory-bytes=N`); a request with another
// limit replaces them.
const MEMORY_ARG = process.argv.find((arg) => arg.startsWith('--memory-bytes='))
let lastMemory = MEMORY_ARG ? Number(MEMORY_ARG.slice('--memory-bytes='.length)) : NaN
if (!Number.isSafeInteger(lastMemory) || lastMemory <= 0) {
  toStderr('runner: start it with --memory-bytes=N (the host passes its memory limit)')
  process.exit(2)
}

// The host's list of SDK calls (shared/mcpdo/sdk/calls.py), given once at start (`--sdk=JSON`): the calls it
// serves, and the ones a read-only script may not make.
function sdkRules(arg) {
  const isNameList = (v) => Array.isArray(v) && v.every((n) => typeof n === 'string')
  let raw = null
  try {
    raw = arg ? JSON.parse(arg.slice('--sdk='.length)) : null
  } catch {
    return null
  }
  if (!raw || !isNameList(raw.calls) || !isNameList(raw.writes) || !isNameList(raw.conditionalWrites)) return null
  return { calls: new Set(raw.calls), writes: raw.writes, conditionalWrites: raw.conditionalWrites }
}
const SDK = sdkRules(process.argv.find((arg) => arg.startsWith('--sdk=')))
if (!SDK) {
  toStderr('runner: start it with --sdk={"calls":[...],"writes":[...],"conditionalWrites":[...]}')
  process.exit(2)
}
const readyInstances = []
let building = null

// A wasm instance is reused only by the caller it first served (the request's `key`), one execution after
// another, each on its runtime rewound to the image kept before it first ran (engine.mjs), and only after
// executions that ended cleanly; it is dropped after MAX_USES executions or once it may not be rewound
// (engine.mjs mayRewind: it grew too far past its image).
const MAX_USES = 64
// At most one: { inst, parts, ready }: a caller's finished runtime, the parts its execution used, and whether
// it has been rewound for that caller's next execution (readyWarm).
let warm = null
let warmTimer = null
// How often the next execution was the kept instance's caller (moving average). Preparing the next runtime
// ahead of time pays off when it is; when callers interleave (a busy process serving many), the kept instance
// is mostly replaced unused, so its runtime is rewound only when its caller comes back.
let reuseRate = 1
// How often a request had a key (moving average): whether fill keeps images of the instances it prepares.
let keyedRate = 1

// One fewer while an instance is kept for a caller: that caller's next execution takes the kept one, so under
// keyed traffic a second fresh instance would only hold its memory.
function aheadTarget() {
  return warm ? AHEAD - 1 : AHEAD
}

function fill() {
  if (building || readyInstances.length >= aheadTarget()) return
  const mem = lastMemory
  building = buildInstance(mem, { yieldBetween: true }).then(
    (inst) => {
      // Most requests are a caller's: its image is kept now, off the request path (see takeInstance).
      if (keyedRate >= 0.5) tryKeepImage(inst)
      if (inst.memoryBytes === lastMemory) readyInstances.push(inst)
    },
    (err) => toStderr('prepare failed', err && err.stack),
  ).finally(() => {
    building = null
    if (readyInstances.length < aheadTarget()) setImmediate(fill)
  })
}

// The kept instance, ready to run: its finished runtime rewound to its image (engine.mjs). When the caller
// used parts the image lacks, it is rewound exactly (all of its stack zeroed too), the parts are compiled in,
// and that is kept as its image: an image is only ever of memory no guest code has run on. Null when that
// failed (the instance is then dropped whole).
function readyWarm(w) {
  if (w.ready) return w.inst
  const complete = imageHas(w.inst, w.parts)
  try {
    rewindRuntime(w.inst, { wholeStack: !complete })
    if (!complete) {
      compileParts(w.inst, w.parts)
      keepImage(w.inst)
    }
  } catch (err) {
    toStderr('reuse failed', err && err.stack)
    return null
  }
  w.ready = true
  return w.inst
}

function prepareWarm() {
  warmTimer = null
  if (warm && !readyWarm(warm)) warm = null
}

function takeWarm(key, mem) {
  if (!warm) return null
  const hit = key !== null && warm.inst.wasm.key === key
  reuseRate = 0.75 * reuseRate + (hit ? 0.25 : 0)
  if (!hit) return null
  const w = warm
  warm = null
  if (warmTimer) {
    clearImmediate(warmTimer)
    warmTimer = null
  }
  return w.inst.memoryBytes === mem ? readyWarm(w) : null
}

async function takeInstance(mem, key) {
  const reused = takeWarm(key, mem)
  if (reused) return reused
  if (mem !== lastMemory) {
    lastMemory = mem
    readyInstances.length = 0
  }
  if (!readyInstances.length && building) await building
  const inst = readyInstances.shift() || await buildInstance(mem)
  inst.wasm.key = key
  keyedRate = 0.75 * keyedRate + (key !== null ? 0.25 : 0)
  // A caller's instance has its image before it runs anything (kept by fill, or now): its later executions
  // rewind to it.
  if (key !== null && !inst.image) tryKeepImage(inst)
  setImmediate(fill)
  return inst
}

function tryKeepImage(inst) {
  try {
    keepImage(inst)
  } catch (err) {
    toStderr('image failed', err && err.stack) // no image: the instance is not kept after its execution
  }
}

// After an execution: keep its wasm instance for the same caller when it may be reused, else drop it whole
// (its memory goes with it). Returns whether it is kept (readyWarm rewinds it later).
function mayKeep(inst, clean) {
  return clean && inst.wasm.key !== null && inst.wasm.uses < MAX_USES && mayRewind(inst)
}

function recycle(inst) {
  // Replaces any instance kept for another caller.
  warm = { inst, parts: [...inst.used], ready: false }
  readyInstances.length = Math.min(readyInstances.length, aheadTarget())
  if (warmTimer) clearImmediate(warmTimer)
  warmTimer = reuseRate >= 0.5 ? setImmediate(prepareWarm) : null
}

// ----------------------------------------------------------------------------------------------
// One execution

let current = null
let nextCallId = 1

const MAIN_FILE = 'script.ts'
const STACK_FRAME = /\(?(script\.ts|mcpdo-module-(\d+)\.js):(\d+):(\d+)\)?/
const moduleFile = (n) => `mcpdo-module-${n}.js`

function mapFrame(toOriginal, m) {
  const p = toOriginal(Number(m[3]), Math.max(0, Number(m[4]) - 1))
  return { line: p.line, column: p.col + 1 }
}

// The caller's position (first frame in the main code) and, when the error was thrown inside an imported
// or preloaded module before reaching it, the module and the position there.
function positionFromStack(stack, mainToOriginal, modules) {
  const out = { main: null, module: null }
  if (!stack) return out
  for (const line of String(stack).split('\n')) {
    const m = STACK_FRAME.exec(line)
    if (!m) continue
    if (m[1] === MAIN_FILE) {
      out.main = mapFrame(mainToOriginal, m)
      break
    }
    const mod = modules[Number(m[2])]
    if (mod && !out.module) out.module = { id: mod.id, ...mapFrame(mod.prepared.errorToOriginal, m) }
  }
  return out
}

function moduleSyntaxMessage(id, err) {
  const where = err.line ? ` at line ${err.line}${err.column ? `:${err.column}` : ''}` : ''
  return `${err.message} (in ${id}${where})`
}

const LOG_LEVELS = new Set(['log', 'info', 'warn', 'error', 'debug'])
const MAX_TIMERS = 10_000
const LOG_ENTRY_BYTES = 64
// `$.Type(props)` records (lazy/dollar.js applies the same bounds; they are checked again here).
const MAX_CONSTRUCTED = 64
const MAX_CONSTRUCTED_KEYS = 64
const MAX_CONSTRUCTED_CHARS = 100
const MAX_ERROR_NAME = 200
const MAX_ERROR_MESSAGE = 16 * 1024
const STACK_MESSAGE = 'Stack overflow: maximum call stack size exceeded (unbounded recursion or nesting?)'
const clip = (text, max) => (text.length > max ? `${text.slice(0, max)}... (${text.length - max} more characters)` : text)
// A kept instance starts at most MAX_REWIND_GROWTH past its image (engine.mjs mayRewind), well below this share
// of the usual limits, so memory grown past it was grown by the execution that is running.
const NEAR_MEMORY_LIMIT = 0.75

class Execution {
  constructor(msg, inst, prepared, limits, preloads) {
    this.id = msg.id
    // Echoed in every message of this execution; never enters the guest.
    this.nonce = msg.nonce
    this.inst = inst
    this.prepared = prepared
    this.limits = limits
    this.kind = msg.kind === 'module' ? 'module' : 'script'
    this.invoke = msg.invoke || null
    // Modules compiled in this execution, by number (their file name): preloads first, then imports.
    this.modules = preloads.map(({ id, prepared: p }) => ({ id, prepared: p }))
    this.moduleIds = new Map(this.modules.map((m, n) => [m.id, n]))
    this.preloadCount = this.modules.length
    this.user = msg.user && typeof msg.user === 'object' ? msg.user : {}
    this.started = performance.now()
    this.deadline = Date.now() + limits.timeout_ms
    this.calls = 0
    this.pending = new Map()
    this.outbox = []
    this.timers = new Map()
    this.timerOps = []
    this.logs = []
    this.logBytes = 0
    this.logsTruncated = false
    this.constructed = []
    this.done = null
    this.fatal = null
    this.interrupted = false
    this.finished = false
    this.deadlineTimer = null
  }

  // One message of this execution to the host: addressed, with its nonce, serialised whole.
  send(message) {
    sendObj(this.addressed(message))
  }

  addressed(message) {
    return { ...message, exec: this.id, nonce: this.nonce }
  }

  // ---- host functions (called from inside the guest; never finish from here) ----

  hostCall(name, argsText) {
    if (this.finished || this.fatal) throw new Error('The execution has ended')
    this.calls += 1
    if (this.calls > this.limits.max_sdk_calls) {
      const message = `SDK call limit exceeded: more than ${this.limits.max_sdk_calls} calls in one execution`
      this.fatal = { kind: 'limit', limit: 'calls', message }
      throw new Error(message)
    }
    // Only the calls the host listed reach it.
    if (typeof name !== 'string' || !SDK.calls.has(name)) throw new Error('Unknown SDK call')
    const maxBytes = this.limits.max_call_bytes
    if (typeof argsText !== 'string' || argsText.length > maxBytes) {
      throw new Error(`${name}(): arguments too large (more than ${maxBytes} bytes)`)
    }
    let args
    try {
      args = JSON.parse(argsText)
    } catch {
      throw new Error(`${name}(): arguments must be JSON`)
    }
    if (!Array.isArray(args)) throw new Error(`${name}(): arguments must be a list`)
    // The argument list is not a level of its own: each argument may nest as deep as a result may.
    const problem = valueProblem(args, this.limits.max_value_depth, `${name}() arguments`, 'arguments', -1)
    if (problem) throw new Error(problem)
    const id = nextCallId++
    const deferred = this.inst.ctx.newPromise()
    deferred.isImport = name === 'import'
    this.pending.set(id, deferred)
    // Sent once the guest step has returned (see enter): nothing Node-side runs on the guest's stack.
    this.outbox.push({ type: 'call', id, name, args })
    return deferred.handle
  }

  hostSync(op, a, b) {
    if (this.finished) return undefined
    switch (op) {
      case 'log':
        this.log(a, JSON.parse(b))
        return undefined
      case 'user':
        return JSON.stringify(this.user)
      case 'uuid':
        return hostRandomUUID()
      case 'random':
        return hostRandomBytes(Number(a))
      case 'random53':
        return hostRandomDoubles(Number(a))
      case 'timer':
        if (this.timers.size + this.timerOps.length >= MAX_TIMERS) {
          throw new Error(`Too many timers: at most ${MAX_TIMERS} at once`)
        }
        this.timerOps.push([Number(a), Number(b)])
        return undefined
      case 'clearTimer':
        this.timerOps.push([Number(a), null])
        return undefined
      case 'done':
        if (!this.done) this.done = { kind: a, text: b }
        return undefined
      case 'constructed':
        this.noteConstructed(a)
        return undefined
      default:
        return undefined
    }
  }

  log(level, message) {
    if (this.logsTruncated) return
    const text = wellFormed(message)
    // Counted as it travels (JSON-escaped) plus the entry around it, so empty lines are not free.
    const size = Buffer.byteLength(JSON.stringify(text), 'utf8') + LOG_ENTRY_BYTES
    if (this.logBytes + size > this.limits.max_log_bytes) {
      this.logsTruncated = true
      this.logs.push({
        level: 'warn',
        message: `Log output truncated: more than ${this.limits.max_log_bytes} bytes of console output`,
        timestamp: new Date().toISOString(),
      })
      return
    }
    this.logBytes += size
    this.logs.push({ level: LOG_LEVELS.has(level) ? level : 'log', message: text, timestamp: new Date().toISOString() })
  }

  // One `$.Type(props)` record from the guest's $ (a JSON array of strings: the type name, then the keys).
  noteConstructed(text) {
    if (this.constructed.length >= MAX_CONSTRUCTED || typeof text !== 'string' ||
      text.length > (MAX_CONSTRUCTED_KEYS + 1) * (MAX_CONSTRUCTED_CHARS * 6 + 3) + 2) return
    let entry
    try {
      entry = JSON.parse(text)
    } catch {
      return
    }
    if (!Array.isArray(entry) || entry.length < 2 || entry.length > MAX_CONSTRUCTED_KEYS + 1 ||
      !entry.every((s) => typeof s === 'string' && s.length <= MAX_CONSTRUCTED_CHARS)) return
    this.constructed.push([wellFormed(entry[0]), entry.slice(1).map(wellFormed)])
  }

  setTimer(id, ms) {
    this.clearTimer(id)
    const delay = Math.min(Math.max(0, ms || 0), 2 ** 31 - 1)
    const t = setTimeout(() => {
      this.timers.delete(id)
      if (this.finished) return
      this.enter(() => {
        const { ctx } = this.inst
        const idH = ctx.newNumber(id)
        const r = ctx.callFunction(this.inst.fireFn, ctx.undefined, idH)
        idH.dispose()
        if (r.error) return r.error
        r.value.dispose()
        return null
      })
    }, delay)
    this.timers.set(id, t)
  }

  clearTimer(id) {
    const t = this.timers.get(id)
    if (t !== undefined) {
      clearTimeout(t)
      this.timers.delete(id)
    }
  }

  // ---- driving the guest ----

  // Asked by the engine while the guest runs (the runtime's interrupt handler, engine.mjs).
  shouldInterrupt() {
    if (this.fatal || this.finished) return true
    if (Date.now() > this.deadline) {
      this.interrupted = true
      return true
    }
    return false
  }

  start() {
    this.deadlineTimer = setTimeout(() => {
      if (this.finished) return
      this.interrupted = true
      this.finish()
    }, this.limits.timeout_ms)
    this.enter(() => {
      const { ctx } = this.inst
      const r = ctx.evalCode(this.prepared.js, MAIN_FILE)
      if (r.error) {
        this.evalError = true
        return r.error
      }
      const handles = [r.value]
      try {
        // Preloads as [id, fn, id, fn, ...]
        const pre = ctx.newArray()
        handles.push(pre)
        for (let n = 0; n < this.modules.length; n++) {
          const c = ctx.evalCode(this.modules[n].prepared.js, moduleFile(n))
          if (c.error) {
            this.evalError = true
            return c.error
          }
          handles.push(c.value)
          const idH = ctx.newString(this.modules[n].id)
          handles.push(idH)
          ctx.setProp(pre, 2 * n, idH)
          ctx.setProp(pre, 2 * n + 1, c.value)
        }
        const options = {
          module: this.kind === 'module',
          invoke: this.invoke ? this.invoke.index : -1,
          args: this.invoke ? this.invoke.args : [],
          maxBytes: this.limits.max_result_bytes,
        }
        const optH = ctx.newString(JSON.stringify(options))
        handles.push(optH)
        const s = ctx.callFunction(this.inst.settleFn, ctx.undefined, r.value, pre, optH)
        if (s.error) return s.error
        s.value.dispose()
        return null
      } finally {
        for (const h of handles) h.dispose()
      }
    })
  }

  // An `import` host call: the host answered { id, code }; compile the module here (positions are ours)
  // and hand the guest { id, fn } (no fn when this execution already compiled that id).
  resolveImport(deferred, msg) {
    const { ctx } = this.inst
    const reject = (name, message) => {
      const h = ctx.newError({ name, message })
      deferred.reject(h)
      h.dispose()
      return null
    }
    if (!msg.ok) return reject('Error', typeof msg.error === 'string' ? msg.error : 'import failed')
    const v = msg.value
    if (!v || typeof v !== 'object' || typeof v.id !== 'string' || typeof v.code !== 'string') {
      return reject('Error', 'import: the host answered without module code')
    }
    let fn = null
    if (!this.moduleIds.has(v.id)) {
      let prepared
      try {
        prepared = prepare(v.code, { kind: 'module' })
      } catch (err) {
        if (err instanceof SourceSyntaxError) return reject('SyntaxError', moduleSyntaxMessage(v.id, err))
        throw err
      }
      const n = this.modules.length
      this.modules.push({ id: v.id, prepared })
      this.moduleIds.set(v.id, n)
      const c = ctx.evalCode(prepared.js, moduleFile(n))
      if (c.error) {
        let info
        try {
          info = ctx.dump(c.error)
        } finally {
          c.error.dispose()
        }
        return reject('SyntaxError', `${String((info && info.message) || 'Invalid module')} (in ${v.id})`)
      }
      fn = c.value
    }
    // Defined, not assigned: the guest may have put setters for these names on Object.prototype.
    const obj = ctx.newObject()
    const idH = ctx.newString(v.id)
    ctx.defineProp(obj, 'id', { value: idH, configurable: true, enumerable: true, writable: true })
    idH.dispose()
    const fnH = fn || ctx.null
    ctx.defineProp(obj, 'fn', { value: fnH, configurable: true, enumerable: true, writable: true })
    if (fn) fn.dispose()
    deferred.resolve(obj)
    obj.dispose()
    return null
  }

  reply(msg) {
    const deferred = this.pending.get(msg.id)
    if (!deferred || this.finished) return
    this.pending.delete(msg.id)
    this.enter(() => {
      const { ctx } = this.inst
      if (deferred.isImport) return this.resolveImport(deferred, msg)
      if (msg.ok) {
        const text = msg.value === undefined ? '' : JSON.stringify(msg.value)
        const h = ctx.newString(text)
        deferred.resolve(h)
        h.dispose()
      } else {
        const message = typeof msg.error === 'string' ? wellFormed(msg.error) : 'Host call failed'
        // A named refusal (AuthenticationError, PermissionError) keeps its name, so scripts can tell it apart.
        const h = typeof msg.name === 'string' ? ctx.newError({ name: msg.name, message }) : ctx.newError(message)
        deferred.reject(h)
        h.dispose()
      }
      return null
    })
  }

  // Run a step inside the guest, then its pending jobs, then decide whether the execution is over.
  enter(step) {
    if (this.finished) return
    let errorHandle = null
    try {
      errorHandle = step()
      if (!errorHandle && !this.done && !this.fatal) {
        const res = this.inst.rt.executePendingJobs(-1)
        if (res.error) errorHandle = res.error
        else res.value && res.value.dispose && res.value.dispose()
      }
    } catch (err) {
      this.trap = err
    }
    if (errorHandle) {
      try {
        this.thrown = this.inst.ctx.dump(errorHandle)
      } catch {
        this.thrown = { name: 'InternalError', message: 'out of memory' }
      }
      try {
        errorHandle.dispose()
      } catch {
        // the instance is discarded anyway
      }
    }
    if (this.done || this.fatal || this.interrupted || this.thrown || this.trap) this.finish()
    else this.flush()
  }

  // What the guest step asked of Node, done now that it is off the guest's (possibly exhausted) stack.
  flush() {
    const ops = this.timerOps
    this.timerOps = []
    for (const [id, ms] of ops) {
      if (ms === null) this.clearTimer(id)
      else this.setTimer(id, ms)
    }
    const out = this.outbox
    this.outbox = []
    // Calls made in the same step leave in one write (one wake-up of the host, not one per call).
    if (out.length) writeOut(out.map((message) => JSON.stringify(this.addressed(message)) + '\n').join(''))
  }

  // A host function hit the end of Node's own stack (deep native recursion inside the engine).
  nativeStackExhausted() {
    if (!this.fatal) this.fatal = { kind: 'limit', limit: 'stack', message: STACK_MESSAGE }
  }

  errorFromInfo(info, fromEval) {
    const name = clip(wellFormed((info && info.name) || 'Error'), MAX_ERROR_NAME)
    const message = clip(wellFormed(info && info.message !== undefined ? info.message : info), MAX_ERROR_MESSAGE)
    if (name === 'InternalError' && /out of memory/i.test(message)) return this.memoryError()
    // When even the error object cannot be allocated, QuickJS throws null: near the limit, that is memory.
    const thrownNull = info === null || (info && info.thrown === true && message === 'null')
    if (thrownNull && this.nearMemoryLimit()) return this.memoryError()
    if ((name === 'InternalError' && /stack overflow/i.test(message)) ||
        (name === 'RangeError' && /call stack/i.test(message))) {
      return {
        kind: 'limit',
        limit: 'stack',
        message: STACK_MESSAGE,
      }
    }
    const found = positionFromStack(info && info.stack, this.prepared.errorToOriginal, this.modules)
    const pos = found.main
    let text = message
    if (found.module) text = `${message} (in ${found.module.id} at line ${found.module.line}:${found.module.column})`
    if (fromEval && name === 'SyntaxError') {
      return { kind: 'syntax', message: text, line: pos ? pos.line : null, column: pos ? pos.column : null }
    }
    return {
      kind: 'runtime',
      name,
      message: text,
      line: pos ? pos.line : null,
      column: pos ? pos.column : null,
    }
  }

  nearMemoryLimit() {
    const memory = this.inst.wasmMemory || (this.inst.wasm && this.inst.wasm.wasmMemory)
    return Boolean(memory) && memory.buffer.byteLength >= NEAR_MEMORY_LIMIT * this.limits.memory_bytes
  }

  memoryError() {
    return {
      kind: 'limit',
      limit: 'memory',
      message: `Memory limit exceeded: the script used more than ${fmtMiB(this.limits.memory_bytes)}`,
    }
  }

  outcome() {
    if (this.fatal) return { error: this.fatal }
    // A built-in that does not poll the interrupt handler can finish past the budget: still a timeout.
    if (this.interrupted || Date.now() > this.deadline) {
      return { error: { kind: 'timeout', message: `Execution timeout after ${this.limits.timeout_ms}ms`,
        budget_ms: this.limits.timeout_ms } }
    }
    if (this.done) {
      const { kind, text } = this.done
      if (kind === 'ok') {
        const bytes = Buffer.byteLength(text, 'utf8')
        if (bytes > this.limits.max_result_bytes) {
          return { error: { kind: 'limit', limit: 'result',
            message: `Result too large: ${bytes} bytes exceeds the limit of ${this.limits.max_result_bytes} bytes` } }
        }
        const value = JSON.parse(text)
        const problem = valueProblem(value, this.limits.max_value_depth, 'Result', 'result')
        if (problem) return { error: { kind: 'limit', limit: 'result', message: problem } }
        return { value }
      }
      if (kind === 'undefined') return { undefined: true }
      const o = JSON.parse(text)
      if (kind === 'limit') return { error: { kind: 'limit', limit: 'result', message: wellFormed(o.message) } }
      return { error: this.errorFromInfo(o, false) }
    }
    if (this.thrown) return { error: this.errorFromInfo(this.thrown, this.evalError) }
    if (this.trap instanceof RangeError && /call stack/i.test(String(this.trap.message))) {
      return { error: { kind: 'limit', limit: 'stack', message: STACK_MESSAGE } }
    }
    if (this.trap) {
      const pages = this.inst.wasmMemory.buffer.byteLength / 65536
      if (pages >= this.inst.maxPages - 64 || /memory|alloc/i.test(String(this.trap && this.trap.message))) {
        return { error: this.memoryError() }
      }
      toStderr('guest trap', this.trap && this.trap.stack)
      return { error: { kind: 'runtime', name: 'InternalError',
        message: 'The sandbox engine failed while running the script', line: null, column: null } }
    }
    return { error: { kind: 'runtime', name: 'Error', message: 'The script ended without a result' } }
  }

  // Module kind: the module's exports; a script: what its preloads exported (its new globals).
  exportNames() {
    if (this.kind === 'module') return this.prepared.exports
    const names = []
    for (const m of this.modules.slice(0, this.preloadCount)) {
      for (const name of m.prepared.exports) if (name !== 'default' && !names.includes(name)) names.push(name)
    }
    return names
  }

  finish() {
    if (this.finished) return
    this.finished = true
    clearTimeout(this.deadlineTimer)
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
    let out
    try {
      out = this.outcome()
    } catch (err) {
      toStderr('outcome failed', err && err.stack)
      out = { error: { kind: 'runtime', name: 'Error', message: 'The script result could not be read' } }
    }
    const inst = this.inst
    inst.exec = null
    this.inst = { rt: null, ctx: null }
    // Clean: a result, and nothing thrown, trapped, interrupted or left waiting on the host.
    const clean = !out.error && !this.fatal && !this.interrupted && !this.thrown && !this.trap &&
      this.pending.size === 0
    const keep = mayKeep(inst, clean)
    this.pending.clear()
    const durationMs = Math.round((performance.now() - this.started) * 1000) / 1000
    const warmKey = keep ? inst.wasm.key : warm ? warm.inst.wasm.key : null
    const result = { type: 'result', durationMs, warm: warmKey, exports: this.exportNames(), logs: this.logs,
      constructed: this.constructed, warnings: this.prepared.warnings }
    if (DEBUG) result.instance = `${process.pid}.${inst.wasm.id}`
    if (out.error) this.send({ ...result, ok: false, error: out.error })
    else if (out.undefined) this.send({ ...result, ok: true, undefined: true, value: null })
    else this.send({ ...result, ok: true, undefined: false, value: out.value })
    // Otherwise the instance is dropped whole: its wasm memory goes with it.
    if (keep) recycle(inst)
    current = null
    if (finishedWaiter) {
      const w = finishedWaiter
      finishedWaiter = null
      w()
    }
  }
}

function reportEarly(msg, error, started) {
  const durationMs = Math.round((performance.now() - started) * 1000) / 1000
  sendObj({ type: 'result', exec: msg.id, nonce: msg.nonce, durationMs, warm: warm ? warm.inst.wasm.key : null, logs: [],
    ok: false, error })
}

async function handleExec(msg) {
  const started = performance.now()
  const { limits, missing } = readLimits(msg.limits)
  if (!limits) {
    reportEarly(msg, { kind: 'input', message: `limits.${missing} must be a positive integer` }, started)
    return
  }
  if (typeof msg.code !== 'string') {
    reportEarly(msg, { kind: 'input', message: 'code must be a string' }, started)
    return
  }
  const kind = msg.kind === undefined || msg.kind === null ? 'script' : msg.kind
  if (kind !== 'script' && kind !== 'module') {
    reportEarly(msg, { kind: 'input', message: `kind must be "script" or "module", not ${JSON.stringify(kind)}` },
      started)
    return
  }
  const inv = msg.invoke
  if (inv !== undefined && inv !== null && (typeof inv !== 'object' || !Number.isInteger(inv.index) || inv.index < 0 ||
    !Array.isArray(inv.args))) {
    reportEarly(msg, { kind: 'input', message: 'invoke must be { index: integer >= 0, args: [...] }' }, started)
    return
  }
  const preloads = []
  const rawPreloads = msg.preload === undefined || msg.preload === null ? [] : msg.preload
  if (!Array.isArray(rawPreloads)) {
    reportEarly(msg, { kind: 'input', message: 'preload must be a list of { id, code }' }, started)
    return
  }
  for (const p of rawPreloads) {
    if (!p || typeof p.id !== 'string' || typeof p.code !== 'string') {
      reportEarly(msg, { kind: 'input', message: 'preload must be a list of { id, code }' }, started)
      return
    }
    try {
      preloads.push({ id: p.id, prepared: prepare(p.code, { kind: 'module' }) })
    } catch (err) {
      if (!(err instanceof SourceSyntaxError)) throw err
      reportEarly(msg, { kind: 'syntax', message: moduleSyntaxMessage(p.id, err), line: null, column: null },
        started)
      return
    }
  }
  let prepared
  try {
    prepared = prepare(msg.code, { kind, readonly: msg.readonly === true, sdk: SDK })
  } catch (err) {
    if (err instanceof SourceSyntaxError) {
      reportEarly(msg, { kind: 'syntax', message: err.message, line: err.line, column: err.column }, started)
    } else {
      toStderr('prepare failed', err && err.stack)
      reportEarly(msg, { kind: 'syntax', message: String((err && err.message) || err), line: null, column: null },
        started)
    }
    return
  }
  if (prepared.violations.length) {
    reportEarly(msg, { kind: 'readonly', message: 'Readonly violations detected',
      violations: prepared.violations }, started)
    return
  }
  const key = typeof msg.key === 'string' ? msg.key : null
  const inst = await takeInstance(limits.memory_bytes, key)
  inst.wasm.uses += 1
  const exec = new Execution(msg, inst, prepared, limits, preloads)
  exec.started = started
  current = exec
  inst.exec = exec
  exec.start()
}

// ----------------------------------------------------------------------------------------------
// Protocol loop

let busy = false
const queue = []

async function drain() {
  if (busy) return
  busy = true
  try {
    while (queue.length) {
      const msg = queue.shift()
      try {
        await handleExec(msg)
      } catch (err) {
        toStderr('exec failed', err && err.stack)
        reportEarly(msg, { kind: 'runtime', name: 'Error', message: 'The sandbox could not start the script' },
          performance.now())
        current = null
      }
      // One execution at a time: wait until this one has reported.
      if (current) await waitFinished()
    }
  } finally {
    busy = false
  }
}

let finishedWaiter = null
function waitFinished() {
  return new Promise((resolve) => {
    finishedWaiter = resolve
  })
}

function handleLine(line) {
  if (!line.trim()) return
  let msg
  try {
    msg = JSON.parse(line)
  } catch {
    toStderr('protocol: malformed line (not JSON)')
    return
  }
  if (!msg || typeof msg !== 'object') {
    toStderr('protocol: malformed message')
    return
  }
  if (msg.type === 'exec' && Number.isSafeInteger(msg.id) && typeof msg.nonce === 'string' && msg.nonce) {
    queue.push(msg)
    drain()
  } else if (msg.type === 'reply' && Number.isSafeInteger(msg.id) && Number.isSafeInteger(msg.exec)) {
    // A late reply to an execution that has ended is dropped: it can never reach the next one.
    if (current && current.id === msg.exec) current.reply(msg)
  } else {
    toStderr('protocol: unknown message type')
  }
}

const MAX_LINE = 64 * 1024 * 1024
let buffer = ''
let discarding = false
process.stdin.setEncoding('utf8')
process.stdin.on('data', (chunk) => {
  let start = 0
  let nl
  while ((nl = chunk.indexOf('\n', start)) >= 0) {
    const piece = chunk.slice(start, nl)
    start = nl + 1
    if (discarding) {
      discarding = false
      buffer = ''
      continue
    }
    const line = buffer ? buffer + piece : piece
    buffer = ''
    try {
      handleLine(line)
    } catch (err) {
      toStderr('line failed', err && err.stack)
    }
  }
  if (!discarding) {
    buffer += chunk.slice(start)
    if (buffer.length > MAX_LINE) {
      buffer = ''
      discarding = true
      toStderr('protocol: line too long')
    }
  }
})
process.stdin.on('end', () => process.exit(0))
process.on('uncaughtException', (err) => toStderr('uncaught', err && err.stack))
process.on('unhandledRejection', (err) => toStderr('unhandled', err && err.stack))

fill()
building.then(() => {
  sendObj({ type: 'ready' })
  // Not at once: the first request usually follows the ready line, and compacts what it uses itself.
  setTimeout(compactLazySources, 1000)
})
