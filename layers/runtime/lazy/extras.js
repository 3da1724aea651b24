// Compiled into the guest on first use; evaluates to a function of (globalThis, define, inner).
// Runs after caller code may have replaced globals and prototypes: uses only `inner.prim` (see prelude.js).
;(function (global, define, inner) {
  'use strict'
  const { ObjectKeys, JSONstringify, JSONparse, ArrayIsArray, ErrorCtor, TypeErrorCtor, MapCtor, MapGet, MapSet,
    MapHas, Uint8ArrayCtor, StringCtor } = inner.prim
  const { hostSync, newList, push } = inner
  // ------------------------------------------------------------------------------------------
  // crypto, structuredClone

  const crypto = {}
  define(crypto, 'randomUUID', () => hostSync('uuid'))
  define(crypto, 'getRandomValues', (arr) => {
    if (!arr || typeof arr !== 'object' || typeof arr.BYTES_PER_ELEMENT !== 'number' || arr instanceof Float32Array ||
      arr instanceof Float64Array) {
      throw new TypeErrorCtor('crypto.getRandomValues() takes an integer typed array')
    }
    const size = arr.byteLength
    if (size > 65536) {
      throw new ErrorCtor(`QuotaExceededError: crypto.getRandomValues() fills at most 65536 bytes, not ${size}`)
    }
    const bytes = JSONparse(hostSync('random', StringCtor(size)))
    const view = new Uint8ArrayCtor(arr.buffer, arr.byteOffset, size)
    for (let i = 0; i < size; i++) view[i] = bytes[i]
    return arr
  })
  define(global, 'crypto', crypto)

  function structuredClone(value) {
    const seen = new MapCtor()
    const clone = (v) => {
      if (v === null || typeof v !== 'object') {
        if (typeof v === 'function' || typeof v === 'symbol') {
          throw new ErrorCtor(`DataCloneError: ${String(v)} could not be cloned`)
        }
        return v
      }
      if (MapHas(seen, v)) return MapGet(seen, v)
      let out
      if (v instanceof Date) out = new Date(v.getTime())
      else if (v instanceof RegExp) out = new RegExp(v.source, v.flags)
      else if (v instanceof Map) {
        out = new Map()
        MapSet(seen, v, out)
        for (const [k, x] of v) out.set(clone(k), clone(x))
        return out
      } else if (v instanceof Set) {
        out = new Set()
        MapSet(seen, v, out)
        for (const x of v) out.add(clone(x))
        return out
      } else if (ArrayIsArray(v)) {
        out = []
        MapSet(seen, v, out)
        for (let i = 0; i < v.length; i++) out[i] = clone(v[i])
        return out
      } else if (ArrayBuffer.isView(v)) {
        out = new v.constructor(v)
      } else if (v instanceof ErrorCtor) {
        out = new ErrorCtor(v.message)
        out.name = v.name
      } else {
        out = {}
        MapSet(seen, v, out)
        for (const k of ObjectKeys(v)) out[k] = clone(v[k])
        return out
      }
      MapSet(seen, v, out)
      return out
    }
    return clone(value)
  }
  define(global, 'structuredClone', structuredClone)

  // user: synchronous, answered from the request
  let userInfo = null
  function userData() {
    if (userInfo === null) {
      const text = hostSync('user')
      userInfo = text ? JSONparse(text) : {}
    }
    return userInfo
  }
  const user = {}
  define(user, 'current', () => {
    const u = userData().current
    return u === undefined || u === null ? null : structuredClone(u)
  })
  define(user, 'session', () => {
    const s = userData().session
    return s === undefined ? null : structuredClone(s)
  })
  define(user, 'can', (action, resource) => {
    // The host decides every call again; this answers from the grants it sent.
    const grants = userData().grants
    if (!ArrayIsArray(grants)) return false
    for (let i = 0; i < grants.length; i++) {
      const g = grants[i]
      if (!ArrayIsArray(g) || g.length < 2) continue
      if ((g[0] === '*' || g[0] === action) && (g[1] === '*' || g[1] === resource)) return true
    }
    return false
  })
  define(global, 'user', user)

  // Result diagnostics: what JSON cannot carry, and where

  function describePath(path) {
    let s = 'result'
    for (let i = 0; i < path.n; i++) {
      const k = path[i]
      s += typeof k === 'number' ? `[${k}]` : /^[A-Za-z_$][\w$]*$/.test(k) ? `.${k}` : `[${JSONstringify(k)}]`
    }
    return s
  }

  function findBadValue(root) {
    const stack = newList()
    const path = newList()
    const onStack = (v) => {
      for (let i = 0; i < stack.n; i++) if (stack[i] === v) return true
      return false
    }
    const visit = (v) => {
      if (v && typeof v === 'object' && typeof v.toJSON === 'function') v = v.toJSON()
      else if (typeof v === 'function' && typeof v.toJSON === 'function') v = v.toJSON()
      if (typeof v === 'bigint') return `Cannot return a BigInt: values must be JSON (at ${describePath(path)})`
      if (typeof v === 'function') return `Cannot return a function: values must be JSON (at ${describePath(path)})`
      if (!v || typeof v !== 'object') return null
      if (onStack(v)) return `Cannot return a circular structure: values must be JSON (at ${describePath(path)})`
      push(stack, v)
      const isArray = ArrayIsArray(v)
      const keys = isArray ? null : ObjectKeys(v)
      const count = isArray ? v.length : keys.length
      for (let i = 0; i < count; i++) {
        const k = isArray ? i : keys[i]
        push(path, k)
        const r = visit(v[k])
        path.n -= 1
        if (r) return r
      }
      stack.n -= 1
      return null
    }
    return visit(root)
  }

  inner.findBadValue = findBadValue
})
