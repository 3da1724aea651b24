// Compiled into the guest on first use; evaluates to a function of (globalThis, define, inner).
// SDK transport: db, ai, api, and the call/track helpers the event and import parts share.
// Runs after caller code may have replaced globals and prototypes: uses only `inner.prim` (see prelude.js).
;(function (global, define, inner) {
  'use strict'
  const { JSONstringify, JSONparse, ErrorCtor, TypeErrorCtor, PromiseCtor, PromiseThen, StringCtor } = inner.prim
  const hostCall = inner.hostCall

  // Every SDK promise not yet settled is waited for at the end; a rejected on/every registration fails the
  // execution.
  function settled() {
    inner.pending -= 1
    if (inner.pending === 0 && inner.drained !== null) {
      const next = inner.drained
      inner.drained = null
      next()
    }
  }

  function track(p, mustSucceed) {
    inner.pending += 1
    PromiseThen(p, settled, (err) => {
      if (mustSucceed && inner.registrationError === undefined) inner.registrationError = err
      settled()
    })
    return p
  }

  function hostError(err, site) {
    let message = 'Host call failed'
    let name = 'Error'
    try {
      message = StringCtor(err.message)
      name = StringCtor(err.name)
    } catch (_) {}
    const e = new ErrorCtor(message)
    define(e, 'stack', site.stack)
    // A named host refusal (AuthenticationError, PermissionError) keeps its name.
    if (name !== 'Error') define(e, 'name', name)
    return e
  }

  // A promise of the host's answer to `name(args)`, built here so that what the caller sees resolves only
  // through the prelude's own continuations.
  function call(name, args) {
    const site = new ErrorCtor('')
    let json
    try {
      json = JSONstringify(args)
    } catch (e) {
      throw new TypeErrorCtor(`${name}(): arguments must be JSON-serializable (${e && e.message})`)
    }
    const raw = hostCall(name, json) // throws synchronously on the call limit and on bad arguments
    return new PromiseCtor((resolve, reject) => {
      PromiseThen(raw, (text) => {
        try {
          resolve(text === undefined || text === '' ? undefined : JSONparse(text))
        } catch (e) {
          reject(e)
        }
      }, (err) => reject(hostError(err, site)))
    })
  }

  function sdk(name) {
    return function (...args) {
      return track(call(name, args), false)
    }
  }

  const db = {}
  const dbMethods = ['list', 'get', 'create', 'update', 'delete', 'relate', 'related']
  for (let i = 0; i < dbMethods.length; i++) define(db, dbMethods[i], sdk(`db.${dbMethods[i]}`))
  const ai = {}
  define(ai, 'generate', sdk('ai.generate'))
  define(ai, 'embed', sdk('ai.embed'))
  define(ai, 'batch', sdk('ai.batch'))
  const api = {}
  define(api, 'fetch', sdk('api.fetch'))
  define(api, 'proxy', sdk('api.proxy'))
  define(global, 'db', db)
  define(global, 'ai', ai)
  define(global, 'api', api)

  inner.call = call
  inner.track = track
})
