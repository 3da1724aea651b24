// Guest prelude: evaluated into every fresh QuickJS context before the caller's code.
// It sees only two host functions, captures them, and removes them from the global object.
//
// The caller's code runs in the same realm and may replace any global or prototype property (setters on
// Object.prototype, a new Promise.prototype.then, a getter on Array.prototype[0], ...). So everything the
// prelude and the lazily compiled parts do after caller code starts uses only what is captured here
// (`prim`), keeps private state in closures or null-prototype objects, and never assigns a property on an
// object whose prototype chain the caller can change. What the caller can still touch is its own values.
;(function (global) {
  'use strict'
  const hostCall = global.__mcpdo_call
  const hostSync = global.__mcpdo_sync
  delete global.__mcpdo_call
  delete global.__mcpdo_sync

  const FunctionPrototype = Function.prototype
  // uncurry(Set.prototype.add)(set, x) is set.add(x) without looking anything up at call time.
  const uncurry = FunctionPrototype.bind.bind(FunctionPrototype.call)
  const bindTo = uncurry(FunctionPrototype.bind)

  const prim = Object.freeze({
    __proto__: null,
    ObjectCreate: Object.create,
    ObjectDefineProperty: Object.defineProperty,
    ObjectFreeze: Object.freeze,
    ObjectKeys: Object.keys,
    ObjectHasOwn: Object.hasOwn,
    ArrayIsArray: Array.isArray,
    JSONstringify: JSON.stringify,
    JSONparse: JSON.parse,
    ReflectApply: Reflect.apply,
    PromiseCtor: Promise,
    PromiseThen: uncurry(Promise.prototype.then),
    PromiseResolve: bindTo(Promise.resolve, Promise),
    PromiseReject: bindTo(Promise.reject, Promise),
    ErrorCtor: Error,
    TypeErrorCtor: TypeError,
    StringCtor: String,
    // Called through ReflectApply, not uncurried: one more bound function in this record measurably changes
    // QuickJS's GC timing (an endless promise chain then runs to the deadline instead of the memory limit).
    StringSlice: String.prototype.slice,
    MapCtor: Map,
    MapGet: uncurry(Map.prototype.get),
    MapSet: uncurry(Map.prototype.set),
    MapHas: uncurry(Map.prototype.has),
    MapDelete: uncurry(Map.prototype.delete),
    ProxyCtor: Proxy,
    ReflectGetOwnPropertyDescriptor: Reflect.getOwnPropertyDescriptor,
    SymbolToPrimitive: Symbol.toPrimitive,
    Uint8ArrayCtor: Uint8Array,
  })
  const { ObjectDefineProperty, JSONstringify, JSONparse, PromiseThen, PromiseResolve, ErrorCtor, StringCtor } = prim

  const define = (obj, name, value) =>
    ObjectDefineProperty(obj, name, { __proto__: null, value, writable: true, configurable: true, enumerable: false })

  // A private list: a null-prototype record, so writing an element never reaches a caller's setter.
  const newList = () => ({ __proto__: null, n: 0 })
  const push = (list, value) => {
    list[list.n] = value
    list.n += 1
  }

  // ------------------------------------------------------------------------------------------
  // Compiled on first use, so that a fresh context per execution is cheap to prepare (QuickJS compiles
  // every function of a source when it evaluates it): the SDK (db, ai, api), events (on, every, send),
  // modules (import, preloads), console formatting, `$`, timers, crypto/structuredClone/user,
  // URL/URLSearchParams, Intl and en-US locale formatting (layers/runtime/lazy/). `inner` carries what those
  // parts share with this core and with each other; every field exists from the start.

  const inner = {
    __proto__: null,
    hostCall,
    hostSync,
    prim,
    newList,
    push,
    load,
    // SDK calls not yet settled (the execution waits for them) and the callback waiting for none to be left.
    pending: 0,
    drained: null,
    // The first rejected on/every registration: it fails the execution.
    registrationError: undefined,
    handlers: newList(),
    // While an imported or preloaded module's top level runs, on()/every() register nothing.
    importing: 0,
    // The handler index a stored module's delivery runs (-1: not a delivery; see lazy/events.js).
    invoking: -1,
    call: null,
    track: null,
    fire: null,
    invoke: null,
    importMain: null,
    preload: null,
    formatValue: null,
    findBadValue: null,
  }
  const evalFn = global.eval
  const loaded = { __proto__: null }
  // Parts compiled before the caller's code ran (`compileParts`), run when first used like the others.
  const compiled = { __proto__: null }
  function load(name) {
    if (!loaded[name]) {
      loaded[name] = true
      const source = hostSync('lazy', name)
      const part = source === '' ? compiled[name] : evalFn(source)
      part(global, define, inner)
    }
  }
  function lazyGlobal(name, chunk) {
    ObjectDefineProperty(global, name, {
      __proto__: null,
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
    __proto__: null,
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
      return real === stub ? StringCtor(this) : prim.ReflectApply(real, this, args)
    }
    define(proto, method, stub)
  }

  // Math.random from the host's CSPRNG, fetched in batches: QuickJS seeds its own generator from the clock,
  // so runtimes prepared at the same millisecond would share a sequence.
  let randomPool = null
  let randomAt = 0
  define(Math, 'random', function random() {
    if (randomPool === null || randomAt >= randomPool.length) {
      const text = hostSync('random53', '64')
      if (text === undefined) throw new ErrorCtor('Math.random() is not available outside an execution')
      randomPool = JSONparse(text)
      randomAt = 0
    }
    const value = randomPool[randomAt]
    randomAt += 1
    return value
  })

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
      if (msg) return { __proto__: null, kind: 'result', message: msg }
      throw e
    }
    if (text === undefined) return { __proto__: null, undefined: true }
    if (text.length > maxBytes) {
      return {
        __proto__: null,
        kind: 'result',
        message: `Result too large: ${text.length} bytes exceeds the limit of ${maxBytes} bytes`,
      }
    }
    return { __proto__: null, text }
  }

  function errorInfo(e) {
    if (e instanceof ErrorCtor) {
      let stack = ''
      try {
        stack = StringCtor(e.stack || '').slice(0, 4000)
      } catch (_) {}
      let message = ''
      try {
        message = StringCtor(e.message)
      } catch (_) {}
      let name = 'Error'
      try {
        name = StringCtor(e.name || 'Error')
      } catch (_) {}
      return { __proto__: null, name, message, stack }
    }
    let message
    try {
      if (typeof e === 'object' && e !== null) {
        load('console')
        message = inner.formatValue(e, true)
      } else message = StringCtor(e)
    } catch (_) {
      message = 'Uncaught exception'
    }
    return { __proto__: null, name: 'Error', message, stack: '', thrown: true }
  }

  function reportError(e) {
    let text
    try {
      text = JSONstringify(errorInfo(e))
    } catch (_) {
      text = JSONstringify({ __proto__: null, name: 'Error', message: 'Uncaught exception', stack: '' })
    }
    hostSync('done', 'error', text)
  }

  // ------------------------------------------------------------------------------------------
  // The execution: preloads, the caller's code (given the `import` function), the handler to invoke, every SDK
  // call it started, then the result. Chained with the captured `then` rather than `await`, so a caller who
  // replaces Promise.prototype.then or .constructor does not step into these continuations.

  const importMain = (spec, names) => {
    load('modules')
    return inner.importMain(spec, names)
  }

  function step(run, next) {
    let value
    try {
      value = run()
    } catch (e) {
      reportError(e)
      return
    }
    PromiseThen(PromiseResolve(value), (v) => {
      try {
        next(v)
      } catch (e) {
        reportError(e)
      }
    }, reportError)
  }

  function whenDrained(next) {
    if (inner.pending === 0) next()
    else inner.drained = next
  }

  function settle(main, preloads, optionsText) {
    const options = JSONparse(optionsText)
    inner.invoking = options.invoke
    const finish = (value) => {
      // SDK calls the script did not await still finish inside the execution.
      whenDrained(() => {
        if (inner.registrationError !== undefined) {
          reportError(inner.registrationError)
          return
        }
        const out = serialize(value, options.maxBytes)
        if (out.text !== undefined) hostSync('done', 'ok', out.text)
        else if (out.undefined) hostSync('done', 'undefined', '')
        else hostSync('done', 'limit', JSONstringify(out))
      })
    }
    const runMain = () => step(() => main(importMain), (value) => {
      if (options.invoke < 0) finish(options.module ? undefined : value)
      else {
        step(() => {
          load('events')
          return inner.invoke(options.invoke, options.args)
        }, finish)
      }
    })
    if (preloads.length) {
      step(() => {
        load('modules')
        return inner.preload(preloads)
      }, runMain)
    } else runMain()
  }

  // Lazy parts compiled before the caller's code runs (a JSON list of part names; see engine.mjs).
  const compileParts = (namesText) => {
    for (const name of JSONparse(namesText)) compiled[name] = evalFn(hostSync('part', name))
  }

  // Only the runner gets these (the completion value of this file), never the guest.
  return [settle, fire, compileParts]
})(globalThis)
