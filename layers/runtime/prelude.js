// Guest prelude: evaluated into every fresh QuickJS context before the caller's code.
// It sees only two host functions, captures them, and removes them from the global object.
;(function (global) {
  'use strict'
  const hostCall = global.__mcpdo_call
  const hostSync = global.__mcpdo_sync
  delete global.__mcpdo_call
  delete global.__mcpdo_sync

  const JSONstringify = JSON.stringify
  const JSONparse = JSON.parse
  const PromiseCtor = Promise
  const ErrorCtor = Error

  const define = (obj, name, value) =>
    Object.defineProperty(obj, name, { value, writable: true, configurable: true, enumerable: false })

  // ------------------------------------------------------------------------------------------
  // Compiled on first use, so that a fresh context per execution is cheap to prepare (QuickJS compiles
  // every function of a source when it evaluates it): the SDK (db, ai, api), events (on, every, send),
  // modules (import, preloads), console formatting, `$`, timers, crypto/structuredClone/user,
  // URL/URLSearchParams, Intl and en-US locale formatting (layers/runtime/lazy/). `inner` carries what those
  // parts share with this core and with each other.

  const inner = {
    hostCall,
    hostSync,
    // Captured before any caller code runs, for the parts compiled later (which must not see replacements).
    intrinsics: Object.freeze({ ObjectKeys: Object.keys, JSONstringify, JSONparse, ArrayIsArray: Array.isArray,
                                PromiseCtor, ErrorCtor }),
    load,
    // SDK promises not yet settled (awaited at the end) and on/every registrations (a rejection fails).
    outstanding: new Set(),
    registrations: [],
    handlers: [],
    // While an imported or preloaded module's top level runs, on()/every() register nothing.
    importing: 0,
    fire: null,
    formatValue: null,
    findBadValue: null,
  }
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
  const lazyGlobals = {
    sdk: ['db', 'ai', 'api'],
    events: ['on', 'every', 'send'],
    console: ['console'],
    dollar: ['$'],
    timers: ['setTimeout', 'setInterval', 'clearTimeout', 'clearInterval', 'queueMicrotask'],
    extras: ['crypto', 'structuredClone', 'user'],
    url: ['URL', 'URLSearchParams'],
  }
  for (const chunk in lazyGlobals) for (const name of lazyGlobals[chunk]) lazyGlobal(name, chunk)
  if (typeof global.Intl === 'undefined') lazyGlobal('Intl', 'locale')
  const fire = (id) => {
    if (inner.fire) inner.fire(id)
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
  // The execution: preloads, the caller's code (given the `import` function), the handler to invoke, every SDK
  // call it started, then the result.

  const importMain = (spec, names) => {
    load('modules')
    return inner.importMain(spec, names)
  }

  async function settle(main, preloads, optionsText) {
    const options = JSONparse(optionsText)
    const { outstanding, registrations } = inner
    try {
      if (preloads.length) {
        load('modules')
        await inner.preload(preloads)
      }
      let value = await main(importMain)
      if (options.module) value = undefined
      if (options.invoke >= 0) {
        load('events')
        value = await inner.invoke(options.invoke, options.args)
      }
      // SDK calls the script did not await still finish inside the execution.
      while (outstanding.size) await PromiseCtor.all(Array.from(outstanding))
      for (const r of registrations) await r
      const out = serialize(value, options.maxBytes)
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
