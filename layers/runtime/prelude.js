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

  // ------------------------------------------------------------------------------------------
  // Compiled on first use, so that a fresh context per execution is cheap to prepare: console
  // formatting, `$`, timers, crypto/structuredClone/user, URL/URLSearchParams, Intl and en-US locale
  // formatting (layers/runtime/lazy/). `inner` carries what those parts share with this core.

  const inner = { hostSync, fire: null, formatValue: null, findBadValue: null }
  const evalFn = global.eval
  const loaded = {}
  function load(name) {
    if (!loaded[name]) {
      loaded[name] = true
      evalFn(hostSync('lazy', name))(global, define, inner)
    }
  }
  function lazyGlobal(name, chunk) {
    Object.defineProperty(global, name, {
      configurable: true,
      enumerable: false,
      get() {
        load(chunk)
        return global[name]
      },
      set(v) {
        define(global, name, v)
      },
    })
  }
  lazyGlobal('console', 'console')
  lazyGlobal('$', 'dollar')
  for (const name of ['setTimeout', 'setInterval', 'clearTimeout', 'clearInterval', 'queueMicrotask']) {
    lazyGlobal(name, 'timers')
  }
  for (const name of ['crypto', 'structuredClone', 'user']) lazyGlobal(name, 'extras')
  const fire = (id) => {
    if (inner.fire) inner.fire(id)
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
      load('extras')
      const msg = inner.findBadValue(value)
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
      if (typeof e === 'object' && e !== null) {
        load('console')
        message = inner.formatValue(e, true)
      } else message = String(e)
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
  // Only the runner gets these (the completion value of this file), never the guest.
  return [settle, fire]
})(globalThis)
