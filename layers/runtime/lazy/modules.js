// Compiled into the guest on first use; evaluates to a function of (globalThis, define, inner).
// Modules: `import` asks the host for { id, code }; the runner compiles the code and answers { id, fn }
// (fn null when this execution already compiled that id). Each module runs once per execution.
// Runs after caller code may have replaced globals and prototypes: uses only `inner.prim` (see prelude.js).
;(function (global, define, inner) {
  'use strict'
  const { ObjectCreate, ObjectFreeze, ObjectKeys, ObjectHasOwn, JSONstringify, PromiseCtor, PromiseThen,
    PromiseResolve, PromiseReject, ErrorCtor, TypeErrorCtor, MapCtor, MapGet, MapSet, StringCtor } = inner.prim
  const hostCall = inner.hostCall

  const modules = new MapCtor() // id -> { done, ns, error, promise }

  function atSite(e, site) {
    try {
      define(e, 'stack', site.stack)
    } catch (_) {}
    return e
  }

  function named(name, message) {
    const e = new ErrorCtor(message)
    if (name !== 'Error') define(e, 'name', name)
    return e
  }

  function hostImport(spec, site) {
    let json
    try {
      json = JSONstringify([spec])
    } catch (e) {
      throw new TypeErrorCtor('import: the module specifier must be a string')
    }
    const raw = hostCall('import', json)
    return new PromiseCtor((resolve, reject) => {
      PromiseThen(raw, resolve, (err) => {
        let message = 'import failed'
        let name = 'Error'
        try {
          message = StringCtor(err.message)
          name = err.name === 'SyntaxError' ? 'SyntaxError' : 'Error'
        } catch (_) {}
        reject(atSite(named(name, message), site))
      })
    })
  }

  const inChain = (chain, id) => {
    for (let i = 0; i < chain.n; i++) if (chain[i] === id) return true
    return false
  }
  const extend = (chain, id) => {
    const out = inner.newList()
    for (let i = 0; i < chain.n; i++) inner.push(out, chain[i])
    inner.push(out, id)
    return out
  }
  const describe = (chain) => {
    let s = ''
    for (let i = 0; i < chain.n; i++) s += (i ? ' -> ' : '') + chain[i]
    return s
  }

  function runModule(id, fn, chain, site) {
    const known = MapGet(modules, id)
    if (known) {
      if (inChain(chain, id)) {
        return PromiseReject(atSite(new ErrorCtor(`Import cycle: ${describe(extend(chain, id))}`), site))
      }
      if (known.error !== undefined) return PromiseReject(known.error)
      return known.done ? PromiseResolve(known.ns) : known.promise
    }
    if (typeof fn !== 'function') {
      return PromiseReject(atSite(new ErrorCtor(`import: module ${id} could not be loaded`), site))
    }
    const entry = { __proto__: null, done: false, ns: null, error: undefined, promise: null }
    MapSet(modules, id, entry)
    const within = extend(chain, id)
    inner.importing += 1
    entry.promise = new PromiseCtor((resolve, reject) => {
      const failed = (e) => {
        inner.importing -= 1
        // The throw site inside the module comes first, then where the caller imported it.
        if (e instanceof ErrorCtor) {
          try {
            define(e, 'stack', StringCtor(e.stack || '') + site.stack)
          } catch (_) {}
        }
        entry.error = e
        reject(e)
      }
      let exported
      try {
        exported = fn(importer(within))
      } catch (e) {
        failed(e)
        return
      }
      PromiseThen(PromiseResolve(exported), (value) => {
        inner.importing -= 1
        const ns = ObjectCreate(null)
        const names = ObjectKeys(value)
        for (let i = 0; i < names.length; i++) ns[names[i]] = value[names[i]]
        entry.ns = ObjectFreeze(ns)
        entry.done = true
        resolve(entry.ns)
      }, failed)
    })
    return entry.promise
  }

  function importer(chain) {
    return function importModule(spec, names) {
      const site = new ErrorCtor('')
      return new PromiseCtor((resolve, reject) => {
        PromiseThen(hostImport(StringCtor(spec), site), (reply) => {
          PromiseThen(runModule(reply.id, reply.fn, chain, site), (ns) => {
            if (names) {
              for (let i = 0; i < names.length; i++) {
                if (!ObjectHasOwn(ns, names[i])) {
                  reject(atSite(named('SyntaxError', `The module '${spec}' has no export named '${names[i]}'`),
                    site))
                  return
                }
              }
            }
            resolve(ns)
          }, reject)
        }, reject)
      })
    }
  }

  inner.importMain = importer(inner.newList())
  // Preloads as [id, fn, id, fn, ...]: their exports become globals, one module after another.
  inner.preload = (preloads) => new PromiseCtor((resolve, reject) => {
    let at = 0
    const next = () => {
      if (at >= preloads.length) {
        resolve(undefined)
        return
      }
      const id = preloads[at]
      const fn = preloads[at + 1]
      at += 2
      PromiseThen(runModule(id, fn, inner.newList(), new ErrorCtor('')), (ns) => {
        const names = ObjectKeys(ns)
        for (let i = 0; i < names.length; i++) if (names[i] !== 'default') define(global, names[i], ns[names[i]])
        next()
      }, reject)
    }
    next()
  })
})
