// Guest prelude: evaluated into every fresh QuickJS context before the caller's code.
// It sees only two host functions, captures them, and removes them from the global object.
;(function (global) {
  'use strict'
  const hostCall = global.__mcpdo_call
  const hostSync = global.__mcpdo_sync
  delete global.__mcpdo_call
  delete global.__mcpdo_sync

  const ObjectKeys = Object.keys
  const JSONstringify = JSON.stringify
  const JSONparse = JSON.parse
  const ArrayIsArray = Array.isArray
  const PromiseCtor = Promise
  const ErrorCtor = Error

  const define = (obj, name, value) =>
    Object.defineProperty(obj, name, { value, writable: true, configurable: true, enumerable: false })

  // ------------------------------------------------------------------------------------------
  // Formatting for console output

  function formatValue(v, top) {
    if (typeof v === 'string') return top ? v : JSONstringify(v)
    if (v === undefined) return 'undefined'
    if (v === null) return 'null'
    if (typeof v === 'bigint') return `${v}n`
    if (typeof v === 'symbol') return v.toString()
    if (typeof v === 'function') {
      if (v.__mcpdoType) return v.__mcpdoType
      return `[Function: ${v.name || 'anonymous'}]`
    }
    if (typeof v !== 'object') return String(v)
    if (v instanceof ErrorCtor) return `${v.name || 'Error'}: ${v.message}`
    if (v instanceof Date) return isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString()
    try {
      const seen = []
      return JSONstringify(v, function (key, value) {
        if (typeof value === 'bigint') return `${value}n`
        if (typeof value === 'function') return value.__mcpdoType || `[Function: ${value.name || 'anonymous'}]`
        if (value === undefined) return undefined
        if (value instanceof ErrorCtor) return `${value.name}: ${value.message}`
        if (value instanceof Map) return { '[Map]': Array.from(value.entries()) }
        if (value instanceof Set) return { '[Set]': Array.from(value.values()) }
        if (value && typeof value === 'object') {
          if (seen.indexOf(value) >= 0) return '[Circular]'
          seen.push(value)
        }
        return value
      })
    } catch (e) {
      return String(v)
    }
  }

  function format(args) {
    const parts = []
    for (let i = 0; i < args.length; i++) parts.push(formatValue(args[i], true))
    return parts.join(' ')
  }

  const console = {}
  for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
    define(console, level, function (...args) {
      hostSync('log', level, format(args))
    })
  }
  define(console, 'trace', console.debug)
  define(console, 'table', console.log)
  define(console, 'dir', console.log)
  define(global, 'console', console)

  // ------------------------------------------------------------------------------------------
  // SDK transport

  const outstanding = new Set() // every SDK promise not yet settled (awaited at the end)
  const registrations = [] // on/every registrations: a rejection fails the execution

  function track(p, mustSucceed) {
    const entry = p.then(
      () => outstanding.delete(entry),
      () => outstanding.delete(entry),
    )
    outstanding.add(entry)
    if (mustSucceed) registrations.push(p)
    return p
  }

  function call(name, args) {
    const site = new ErrorCtor('')
    let json
    try {
      json = JSONstringify(args)
    } catch (e) {
      throw new TypeError(`${name}(): arguments must be JSON-serializable (${e && e.message})`)
    }
    const raw = hostCall(name, json) // throws synchronously on the call limit
    return raw.then(
      (text) => (text === undefined || text === '' ? undefined : JSONparse(text)),
      (err) => {
        const e = new ErrorCtor(err && err.message !== undefined ? err.message : String(err))
        try {
          e.stack = site.stack
        } catch (_) {}
        throw e
      },
    )
  }

  function sdk(name) {
    return function (...args) {
      return track(call(name, args), false)
    }
  }

  const db = {}
  for (const m of ['list', 'get', 'create', 'update', 'delete', 'relate', 'related']) define(db, m, sdk(`db.${m}`))
  const ai = {}
  for (const m of ['generate', 'embed', 'batch']) define(ai, m, sdk(`ai.${m}`))
  const api = {}
  for (const m of ['fetch', 'proxy']) define(api, m, sdk(`api.${m}`))

  const handlers = []
  // While an imported or preloaded module's top level runs, its on()/every() calls register nothing:
  // registrations belong to the module being registered or run.
  let importing = 0

  function register(kind) {
    return function (spec, handler) {
      if (typeof handler !== 'function') {
        throw new TypeError(`${kind}(${String(spec)}, handler): handler must be a function`)
      }
      if (importing > 0) return PromiseCtor.resolve(undefined)
      const index = handlers.length
      handlers.push(handler)
      return track(call(kind, [String(spec), index]), true)
    }
  }
  define(global, 'on', register('on'))
  define(global, 'every', register('every'))

  define(global, 'send', function send(event, data) {
    const p = call('send', [String(event), data === undefined ? null : data]).then(async (reply) => {
      if (reply && typeof reply === 'object' && ArrayIsArray(reply.runLocal)) {
        const ev = reply.event || {}
        for (const idx of reply.runLocal) {
          const h = handlers[idx]
          if (typeof h === 'function') await h(ev.data, ev)
        }
        const id = reply.id !== undefined ? reply.id : ev.id
        return { id }
      }
      return reply
    })
    return track(p, false)
  })

  define(global, 'db', db)
  define(global, 'ai', ai)
  define(global, 'api', api)

  // user: synchronous, answered from the request
  let userInfo = null
  function userData() {
    if (userInfo === null) {
      const text = hostSync('user')
      userInfo = text ? JSONparse(text) : {}
    }
    return userInfo
  }
  const user = {}
  define(user, 'current', () => {
    const u = userData().current
    return u === undefined || u === null ? null : structuredClone(u)
  })
  define(user, 'session', () => {
    const s = userData().session
    return s === undefined ? null : structuredClone(s)
  })
  define(user, 'can', (action, resource) => {
    const grants = userData().grants || []
    for (const g of grants) {
      if (!ArrayIsArray(g) || g.length < 2) continue
      if ((g[0] === '*' || g[0] === action) && (g[1] === '*' || g[1] === resource)) return true
    }
    return false
  })
  define(global, 'user', user)

  // ------------------------------------------------------------------------------------------
  // $: types, constructors and event tokens

  function eventToken(name) {
    const tok = {}
    define(tok, 'toString', () => name)
    define(tok, 'toJSON', () => name)
    define(tok, 'valueOf', () => name)
    define(tok, Symbol.toPrimitive, () => name)
    define(tok, '__mcpdoType', name)
    return tok
  }

  const typeCache = new Map()
  function typeProxy(name) {
    let p = typeCache.get(name)
    if (p) return p
    const ctor = function (data) {
      return Object.assign({ $type: name }, data || {})
    }
    const special = {
      toString: () => name,
      toJSON: () => name,
      valueOf: () => name,
      __mcpdoType: name,
      name,
    }
    p = new Proxy(ctor, {
      get(target, prop) {
        if (prop === Symbol.toPrimitive) return () => name
        if (typeof prop === 'symbol') return undefined
        if (Object.prototype.hasOwnProperty.call(special, prop)) return special[prop]
        if (prop === 'then' || prop === 'prototype' || prop === 'length') return undefined
        return eventToken(`${name}.${prop}`)
      },
      has() {
        return false
      },
      ownKeys() {
        return ['prototype']
      },
      getOwnPropertyDescriptor(target, prop) {
        return Reflect.getOwnPropertyDescriptor(target, prop)
      },
      apply(target, thisArg, args) {
        return ctor(args[0])
      },
      construct(target, args) {
        return ctor(args[0])
      },
    })
    typeCache.set(name, p)
    return p
  }
  const dollar = new Proxy(
    {},
    {
      get(target, prop) {
        if (typeof prop === 'symbol') return undefined
        if (prop === 'then' || prop === 'toJSON') return undefined
        if (prop === 'toString') return () => '$'
        return typeProxy(prop)
      },
    },
  )
  define(global, '$', dollar)

  // ------------------------------------------------------------------------------------------
  // Timers (driven by host timers, all cleared when the execution ends)

  const timers = new Map()
  let nextTimer = 1
  function addTimer(fn, ms, args, repeat) {
    if (typeof fn !== 'function') throw new TypeError('Timer callback must be a function')
    const id = nextTimer++
    const delay = Math.max(0, Number(ms) || 0)
    timers.set(id, { fn, args, repeat, delay })
    hostSync('timer', String(id), String(delay))
    return id
  }
  function clearTimer(id) {
    if (timers.delete(id)) hostSync('clearTimer', String(id))
  }
  define(global, 'setTimeout', (fn, ms, ...args) => addTimer(fn, ms, args, false))
  define(global, 'setInterval', (fn, ms, ...args) => addTimer(fn, ms, args, true))
  define(global, 'clearTimeout', (id) => clearTimer(id))
  define(global, 'clearInterval', (id) => clearTimer(id))
  define(global, 'queueMicrotask', (fn) => {
    PromiseCtor.resolve().then(fn)
  })
  define(global, '__mcpdo_fire', (id) => {
    const t = timers.get(id)
    if (!t) return
    if (t.repeat) hostSync('timer', String(id), String(Math.max(1, t.delay)))
    else timers.delete(id)
    t.fn(...t.args)
  })

  // ------------------------------------------------------------------------------------------
  // crypto, structuredClone

  const crypto = {}
  define(crypto, 'randomUUID', () => hostSync('uuid'))
  define(crypto, 'getRandomValues', (arr) => {
    const bytes = JSONparse(hostSync('random', String(arr.length * (arr.BYTES_PER_ELEMENT || 1))))
    const view = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength)
    for (let i = 0; i < view.length; i++) view[i] = bytes[i]
    return arr
  })
  define(global, 'crypto', crypto)

  function structuredClone(value) {
    const seen = new Map()
    const clone = (v) => {
      if (v === null || typeof v !== 'object') {
        if (typeof v === 'function' || typeof v === 'symbol') {
          throw new ErrorCtor(`DataCloneError: ${String(v)} could not be cloned`)
        }
        return v
      }
      if (seen.has(v)) return seen.get(v)
      let out
      if (v instanceof Date) out = new Date(v.getTime())
      else if (v instanceof RegExp) out = new RegExp(v.source, v.flags)
      else if (v instanceof Map) {
        out = new Map()
        seen.set(v, out)
        for (const [k, x] of v) out.set(clone(k), clone(x))
        return out
      } else if (v instanceof Set) {
        out = new Set()
        seen.set(v, out)
        for (const x of v) out.add(clone(x))
        return out
      } else if (ArrayIsArray(v)) {
        out = []
        seen.set(v, out)
        for (let i = 0; i < v.length; i++) out[i] = clone(v[i])
        return out
      } else if (ArrayBuffer.isView(v)) {
        out = new v.constructor(v)
      } else if (v instanceof ErrorCtor) {
        out = new ErrorCtor(v.message)
        out.name = v.name
      } else {
        out = {}
        seen.set(v, out)
        for (const k of ObjectKeys(v)) out[k] = clone(v[k])
        return out
      }
      seen.set(v, out)
      return out
    }
    return clone(value)
  }
  define(global, 'structuredClone', structuredClone)

  // ------------------------------------------------------------------------------------------
  // URL, URLSearchParams, Intl and en-US locale formatting are compiled on first use (they are most
  // of the prelude's size, and a fresh context per execution must be cheap to prepare).

  const evalFn = global.eval
  const loaded = {}
  function load(name) {
    if (!loaded[name]) {
      loaded[name] = true
      evalFn(hostSync('lazy', name))(global, define)
    }
  }
  for (const name of ['URL', 'URLSearchParams']) {
    Object.defineProperty(global, name, {
      configurable: true,
      enumerable: false,
      get() {
        load('url')
        return global[name]
      },
      set(v) {
        define(global, name, v)
      },
    })
  }
  if (typeof global.Intl === 'undefined') {
    Object.defineProperty(global, 'Intl', {
      configurable: true,
      enumerable: false,
      get() {
        load('locale')
        return global.Intl
      },
      set(v) {
        define(global, 'Intl', v)
      },
    })
  }
  for (const [proto, method] of [[Date.prototype, 'toLocaleDateString'], [Date.prototype, 'toLocaleTimeString'],
    [Date.prototype, 'toLocaleString'], [Number.prototype, 'toLocaleString']]) {
    const stub = function (...args) {
      load('locale')
      const real = proto[method]
      return real === stub ? String(this) : real.apply(this, args)
    }
    define(proto, method, stub)
  }

  // ------------------------------------------------------------------------------------------
  // Result: JSON with a clear error for what JSON cannot carry

  function describePath(path) {
    let s = 'result'
    for (const k of path) s += typeof k === 'number' ? `[${k}]` : /^[A-Za-z_$][\w$]*$/.test(k) ? `.${k}` : `[${JSONstringify(k)}]`
    return s
  }

  function findBadValue(root) {
    const stack = []
    const visit = (v, path) => {
      if (v && typeof v === 'object' && typeof v.toJSON === 'function') v = v.toJSON()
      else if (typeof v === 'function' && typeof v.toJSON === 'function') v = v.toJSON()
      if (typeof v === 'bigint') return `Cannot return a BigInt: values must be JSON (at ${describePath(path)})`
      if (typeof v === 'function') return `Cannot return a function: values must be JSON (at ${describePath(path)})`
      if (!v || typeof v !== 'object') return null
      if (stack.indexOf(v) >= 0) return `Cannot return a circular structure: values must be JSON (at ${describePath(path)})`
      stack.push(v)
      const keys = ArrayIsArray(v) ? v.map((_, i) => i) : ObjectKeys(v)
      for (const k of keys) {
        const r = visit(v[k], path.concat([k]))
        if (r) return r
      }
      stack.pop()
      return null
    }
    return visit(root, [])
  }

  function replacer(key, value) {
    const t = typeof value
    if (t === 'bigint' || t === 'function') throw new ErrorCtor('__mcpdo_bad__')
    return value
  }

  function serialize(value, maxBytes) {
    let text
    try {
      text = JSONstringify(value, replacer)
    } catch (e) {
      const msg = findBadValue(value)
      if (msg) return { kind: 'result', message: msg }
      throw e
    }
    if (text === undefined) return { undefined: true }
    if (text.length > maxBytes) {
      return {
        kind: 'result',
        message: `Result too large: ${text.length} bytes exceeds the limit of ${maxBytes} bytes`,
      }
    }
    return { text }
  }

  function errorInfo(e) {
    if (e instanceof ErrorCtor) {
      let stack = ''
      try {
        stack = String(e.stack || '').slice(0, 4000)
      } catch (_) {}
      let message = ''
      try {
        message = String(e.message)
      } catch (_) {}
      return { name: String(e.name || 'Error'), message, stack }
    }
    let message
    try {
      message = typeof e === 'object' && e !== null ? formatValue(e, true) : String(e)
    } catch (_) {
      message = 'Uncaught exception'
    }
    return { name: 'Error', message, stack: '', thrown: true }
  }

  // ------------------------------------------------------------------------------------------
  // Modules: `import` asks the host for { id, code }; the runner compiles the code and answers { id, fn }
  // (fn only the first time an id is seen in this execution). Each module runs once per execution.

  const modules = new Map() // id -> { done, ns, error, promise }
  const NamespaceProto = null

  function atSite(e, site) {
    try {
      e.stack = site.stack
    } catch (_) {}
    return e
  }

  function hostImport(spec, site) {
    let json
    try {
      json = JSONstringify([spec])
    } catch (e) {
      throw new TypeError('import: the module specifier must be a string')
    }
    return hostCall('import', json).then(
      (reply) => reply,
      (err) => {
        const e = new ErrorCtor(err && err.message !== undefined ? err.message : String(err))
        if (err && err.name === 'SyntaxError') e.name = 'SyntaxError'
        throw atSite(e, site)
      },
    )
  }

  function runModule(id, fn, chain, site) {
    const known = modules.get(id)
    if (known) {
      if (chain.indexOf(id) >= 0) {
        throw atSite(new ErrorCtor(`Import cycle: ${chain.concat([id]).join(' -> ')}`), site)
      }
      if (known.error !== undefined) throw known.error
      return known.done ? PromiseCtor.resolve(known.ns) : known.promise
    }
    if (typeof fn !== 'function') throw atSite(new ErrorCtor(`import: module ${id} could not be loaded`), site)
    const entry = { done: false, ns: null, error: undefined, promise: null }
    modules.set(id, entry)
    const inner = chain.concat([id])
    entry.promise = (async () => {
      importing++
      try {
        const exported = await fn(importer(inner))
        const ns = Object.create(NamespaceProto)
        for (const k of ObjectKeys(exported)) ns[k] = exported[k]
        entry.ns = Object.freeze(ns)
        entry.done = true
        return entry.ns
      } catch (e) {
        // The throw site inside the module comes first, then where the caller imported it.
        if (e instanceof ErrorCtor) {
          try {
            e.stack = String(e.stack || '') + site.stack
          } catch (_) {}
        }
        entry.error = e
        throw e
      } finally {
        importing--
      }
    })()
    return entry.promise
  }

  function importer(chain) {
    return async function importModule(spec, names) {
      const site = new ErrorCtor('')
      const reply = await hostImport(String(spec), site)
      const ns = await runModule(reply.id, reply.fn, chain, site)
      if (names) {
        for (const n of names) {
          if (!Object.prototype.hasOwnProperty.call(ns, n)) {
            const e = new ErrorCtor(`The module '${spec}' has no export named '${n}'`)
            e.name = 'SyntaxError'
            throw atSite(e, site)
          }
        }
      }
      return ns
    }
  }

  async function settle(main, preloads, optionsText) {
    const options = JSONparse(optionsText)
    const maxBytes = options.maxBytes
    try {
      for (let i = 0; i < preloads.length; i += 2) {
        const ns = await runModule(preloads[i], preloads[i + 1], [], new ErrorCtor(''))
        for (const k of ObjectKeys(ns)) if (k !== 'default') define(global, k, ns[k])
      }
      let value = await main(importer([]))
      if (options.module) value = undefined
      if (options.invoke >= 0) {
        const h = handlers[options.invoke]
        if (typeof h !== 'function') {
          throw new ErrorCtor(`No handler number ${options.invoke}: the code registered ${handlers.length} ` +
            `handler${handlers.length === 1 ? '' : 's'} with on()/every()`)
        }
        value = await h(...options.args)
      }
      // SDK calls the script did not await still finish inside the execution.
      while (outstanding.size) await PromiseCtor.all(Array.from(outstanding))
      for (const r of registrations) await r
      const out = serialize(value, maxBytes)
      if (out.text !== undefined) hostSync('done', 'ok', out.text)
      else if (out.undefined) hostSync('done', 'undefined', '')
      else hostSync('done', 'limit', JSONstringify(out))
    } catch (e) {
      hostSync('done', 'error', JSONstringify(errorInfo(e)))
    }
  }
  define(global, '__mcpdo_settle', settle)
})(globalThis)
