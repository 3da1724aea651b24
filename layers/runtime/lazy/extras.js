// Compiled into the guest on first use; evaluates to a function of (globalThis, define, inner).
;(function (global, define, inner) {
  'use strict'
  const { ObjectKeys, JSONstringify, JSONparse, ArrayIsArray, PromiseCtor, ErrorCtor } = inner.intrinsics
  const hostSync = inner.hostSync
  // ------------------------------------------------------------------------------------------
  // crypto, structuredClone

  const crypto = {}
  define(crypto, 'randomUUID', () => hostSync('uuid'))
  define(crypto, 'getRandomValues', (arr) => {
    const bytes = JSONparse(hostSync('random', String(arr.length * (arr.BYTES_PER_ELEMENT || 1))))
    const view = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength)
    for (let i = 0; i < view.length; i++) view[i] = bytes[i]
    return arr
  })
  define(global, 'crypto', crypto)

  function structuredClone(value) {
    const seen = new Map()
    const clone = (v) => {
      if (v === null || typeof v !== 'object') {
        if (typeof v === 'function' || typeof v === 'symbol') {
          throw new ErrorCtor(`DataCloneError: ${String(v)} could not be cloned`)
        }
        return v
      }
      if (seen.has(v)) return seen.get(v)
      let out
      if (v instanceof Date) out = new Date(v.getTime())
      else if (v instanceof RegExp) out = new RegExp(v.source, v.flags)
      else if (v instanceof Map) {
        out = new Map()
        seen.set(v, out)
        for (const [k, x] of v) out.set(clone(k), clone(x))
        return out
      } else if (v instanceof Set) {
        out = new Set()
        seen.set(v, out)
        for (const x of v) out.add(clone(x))
        return out
      } else if (ArrayIsArray(v)) {
        out = []
        seen.set(v, out)
        for (let i = 0; i < v.length; i++) out[i] = clone(v[i])
        return out
      } else if (ArrayBuffer.isView(v)) {
        out = new v.constructor(v)
      } else if (v instanceof ErrorCtor) {
        out = new ErrorCtor(v.message)
        out.name = v.name
      } else {
        out = {}
        seen.set(v, out)
        for (const k of ObjectKeys(v)) out[k] = clone(v[k])
        return out
      }
      seen.set(v, out)
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
    const grants = userData().grants || []
    for (const g of grants) {
      if (!ArrayIsArray(g) || g.length < 2) continue
      if ((g[0] === '*' || g[0] === action) && (g[1] === '*' || g[1] === resource)) return true
    }
    return false
  })
  define(global, 'user', user)

  // Result diagnostics: what JSON cannot carry, and where

  function describePath(path) {
    let s = 'result'
    for (const k of path) s += typeof k === 'number' ? `[${k}]` : /^[A-Za-z_$][\w$]*$/.test(k) ? `.${k}` : `[${JSONstringify(k)}]`
    return s
  }

  function findBadValue(root) {
    const stack = []
    const visit = (v, path) => {
      if (v && typeof v === 'object' && typeof v.toJSON === 'function') v = v.toJSON()
      else if (typeof v === 'function' && typeof v.toJSON === 'function') v = v.toJSON()
      if (typeof v === 'bigint') return `Cannot return a BigInt: values must be JSON (at ${describePath(path)})`
      if (typeof v === 'function') return `Cannot return a function: values must be JSON (at ${describePath(path)})`
      if (!v || typeof v !== 'object') return null
      if (stack.indexOf(v) >= 0) return `Cannot return a circular structure: values must be JSON (at ${describePath(path)})`
      stack.push(v)
      const keys = ArrayIsArray(v) ? v.map((_, i) => i) : ObjectKeys(v)
      for (const k of keys) {
        const r = visit(v[k], path.concat([k]))
        if (r) return r
      }
      stack.pop()
      return null
    }
    return visit(root, [])
  }

  inner.findBadValue = findBadValue
})
