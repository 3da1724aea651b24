// Compiled into the guest on first use; evaluates to a function of (globalThis, define, inner).
// Timers, driven by host timers and all cleared when the execution ends.
// Runs after caller code may have replaced globals and prototypes: uses only `inner.prim` (see prelude.js).
;(function (global, define, inner) {
  'use strict'
  const { MapCtor, MapGet, MapSet, MapDelete, PromiseThen, PromiseResolve, TypeErrorCtor, ReflectApply,
    StringCtor } = inner.prim
  const hostSync = inner.hostSync

  const timers = new MapCtor()
  let nextTimer = 1
  function addTimer(fn, ms, args, repeat) {
    if (typeof fn !== 'function') throw new TypeErrorCtor('Timer callback must be a function')
    const id = nextTimer++
    const delay = Math.max(0, Number(ms) || 0)
    MapSet(timers, id, { __proto__: null, fn, args, repeat, delay })
    hostSync('timer', StringCtor(id), StringCtor(delay))
    return id
  }
  function clearTimer(id) {
    if (MapDelete(timers, id)) hostSync('clearTimer', StringCtor(id))
  }
  define(global, 'setTimeout', (fn, ms, ...args) => addTimer(fn, ms, args, false))
  define(global, 'setInterval', (fn, ms, ...args) => addTimer(fn, ms, args, true))
  define(global, 'clearTimeout', (id) => clearTimer(id))
  define(global, 'clearInterval', (id) => clearTimer(id))
  define(global, 'queueMicrotask', (fn) => {
    if (typeof fn !== 'function') throw new TypeErrorCtor('queueMicrotask callback must be a function')
    PromiseThen(PromiseResolve(undefined), () => fn())
  })
  inner.fire = (id) => {
    const t = MapGet(timers, id)
    if (!t) return
    if (t.repeat) hostSync('timer', StringCtor(id), StringCtor(Math.max(1, t.delay)))
    else MapDelete(timers, id)
    ReflectApply(t.fn, undefined, t.args)
  }
})
