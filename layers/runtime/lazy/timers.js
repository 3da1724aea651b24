// Compiled into the guest on first use; evaluates to a function of (globalThis, define, inner).
;(function (global, define, inner) {
  'use strict'
  const { ObjectKeys, JSONstringify, JSONparse, ArrayIsArray, PromiseCtor, ErrorCtor } = inner.intrinsics
  const hostSync = inner.hostSync
  // ------------------------------------------------------------------------------------------
  // Timers (driven by host timers, all cleared when the execution ends)

  const timers = new Map()
  let nextTimer = 1
  function addTimer(fn, ms, args, repeat) {
    if (typeof fn !== 'function') throw new TypeError('Timer callback must be a function')
    const id = nextTimer++
    const delay = Math.max(0, Number(ms) || 0)
    timers.set(id, { fn, args, repeat, delay })
    hostSync('timer', String(id), String(delay))
    return id
  }
  function clearTimer(id) {
    if (timers.delete(id)) hostSync('clearTimer', String(id))
  }
  define(global, 'setTimeout', (fn, ms, ...args) => addTimer(fn, ms, args, false))
  define(global, 'setInterval', (fn, ms, ...args) => addTimer(fn, ms, args, true))
  define(global, 'clearTimeout', (id) => clearTimer(id))
  define(global, 'clearInterval', (id) => clearTimer(id))
  define(global, 'queueMicrotask', (fn) => {
    PromiseCtor.resolve().then(fn)
  })
  inner.fire = (id) => {
    const t = timers.get(id)
    if (!t) return
    if (t.repeat) hostSync('timer', String(id), String(Math.max(1, t.delay)))
    else timers.delete(id)
    t.fn(...t.args)
  }
})
