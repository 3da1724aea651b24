// Compiled into the guest on first use; evaluates to a function of (globalThis, define, inner).
// SDK transport: db, ai, api, and the call/track helpers the event and import parts share.
;(function (global, define, inner) {
  'use strict'
  const { JSONstringify, JSONparse, ErrorCtor } = inner.intrinsics
  const hostCall = inner.hostCall
  const { outstanding, registrations } = inner

  // Every SDK promise not yet settled is awaited at the end; a rejected on/every registration fails the
  // execution.
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
          // A named host refusal (AuthenticationError, PermissionError) keeps its name.
          if (err && typeof err.name === 'string' && err.name !== 'Error') e.name = err.name
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
  define(global, 'db', db)
  define(global, 'ai', ai)
  define(global, 'api', api)

  inner.call = call
  inner.track = track
})
