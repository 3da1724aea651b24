// Compiled into the guest on first use; evaluates to a function of (globalThis, define, inner).
// on/every registrations, send (which runs the script's own matching handlers), and handler invocation.
;(function (global, define, inner) {
  'use strict'
  const { ArrayIsArray, PromiseCtor, ErrorCtor } = inner.intrinsics
  inner.load('sdk')
  const { call, track, handlers } = inner

  function register(kind) {
    return function (spec, handler) {
      if (typeof handler !== 'function') {
        throw new TypeError(`${kind}(${String(spec)}, handler): handler must be a function`)
      }
      // While an imported or preloaded module's top level runs, its on()/every() calls register nothing:
      // registrations belong to the module being registered or run.
      if (inner.importing > 0) return PromiseCtor.resolve(undefined)
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

  inner.invoke = (index, args) => {
    const h = handlers[index]
    if (typeof h !== 'function') {
      throw new ErrorCtor(`No handler number ${index}: the code registered ${handlers.length} ` +
        `handler${handlers.length === 1 ? '' : 's'} with on()/every()`)
    }
    return h(...args)
  }
})
