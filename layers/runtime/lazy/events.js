// Compiled into the guest on first use; evaluates to a function of (globalThis, define, inner).
// on/every registrations, send (which runs the script's own matching handlers), and handler invocation.
// Runs after caller code may have replaced globals and prototypes: uses only `inner.prim` (see prelude.js).
;(function (global, define, inner) {
  'use strict'
  const { ArrayIsArray, PromiseCtor, PromiseThen, PromiseResolve, ErrorCtor, TypeErrorCtor, ReflectApply,
    StringCtor } = inner.prim
  inner.load('sdk')
  const { call, track, handlers, push } = inner

  function register(kind) {
    return function (spec, handler) {
      if (typeof handler !== 'function') {
        throw new TypeErrorCtor(`${kind}(${StringCtor(spec)}, handler): handler must be a function`)
      }
      // While an imported or preloaded module's top level runs, its on()/every() calls register nothing:
      // registrations belong to the module being registered or run.
      if (inner.importing > 0) return PromiseResolve(undefined)
      const index = handlers.n
      push(handlers, handler)
      // A delivery re-runs its module's top level only to find the handler it runs: the registrations are
      // live already, and the host checked, before this execution, that the owner may still receive the
      // event (from its own records, not from what this code says now).
      if (inner.invoking >= 0) return PromiseResolve(undefined)
      return track(call(kind, [StringCtor(spec), index]), true)
    }
  }
  define(global, 'on', register('on'))
  define(global, 'every', register('every'))

  // The script's own handlers for a sent event, one after another, then the event's id.
  function runLocal(reply, resolve, reject) {
    const ev = reply.event || {}
    const order = reply.runLocal
    const id = reply.id !== undefined ? reply.id : ev.id
    let at = 0
    const next = () => {
      if (at >= order.length) {
        resolve({ id })
        return
      }
      const h = handlers[order[at]]
      at += 1
      if (typeof h !== 'function') {
        next()
        return
      }
      let out
      try {
        out = h(ev.data, ev)
      } catch (e) {
        reject(e)
        return
      }
      PromiseThen(PromiseResolve(out), next, reject)
    }
    next()
  }

  define(global, 'send', function send(event, data) {
    const sent = call('send', [StringCtor(event), data === undefined ? null : data])
    const p = new PromiseCtor((resolve, reject) => {
      PromiseThen(sent, (reply) => {
        if (reply && typeof reply === 'object' && ArrayIsArray(reply.runLocal)) runLocal(reply, resolve, reject)
        else resolve(reply)
      }, reject)
    })
    return track(p, false)
  })

  inner.invoke = (index, args) => {
    const h = handlers[index]
    if (typeof h !== 'function') {
      throw new ErrorCtor(`No handler number ${index}: the code registered ${handlers.n} ` +
        `handler${handlers.n === 1 ? '' : 's'} with on()/every()`)
    }
    return ReflectApply(h, undefined, args)
  }
})
