// Compiled into the guest on first use; evaluates to a function of (globalThis, define, inner).
// Modules: `import` asks the host for { id, code }; the runner compiles the code and answers { id, fn }
// (fn only the first time an id is seen in this execution). Each module runs once per execution.
;(function (global, define, inner) {
  'use strict'
  const { ObjectKeys, JSONstringify, PromiseCtor, ErrorCtor } = inner.intrinsics
  const hostCall = inner.hostCall

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
    const within = chain.concat([id])
    entry.promise = (async () => {
      inner.importing++
      try {
        const exported = await fn(importer(within))
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
        inner.importing--
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

  inner.importMain = importer([])
  // Preloads as [id, fn, id, fn, ...]: their exports become globals.
  inner.preload = async (preloads) => {
    for (let i = 0; i < preloads.length; i += 2) {
      const ns = await runModule(preloads[i], preloads[i + 1], [], new ErrorCtor(''))
      for (const k of ObjectKeys(ns)) if (k !== 'default') define(global, k, ns[k])
    }
  }
})
