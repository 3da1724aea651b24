// Compiled into the guest on first use; evaluates to a function of (globalThis, define, inner).
;(function (global, define, inner) {
  'use strict'
  const { ObjectKeys, JSONstringify, JSONparse, ArrayIsArray, PromiseCtor, ErrorCtor } = inner.intrinsics
  const hostSync = inner.hostSync
  // ------------------------------------------------------------------------------------------
  // $: types, constructors and event tokens

  function eventToken(name) {
    const tok = {}
    define(tok, 'toString', () => name)
    define(tok, 'toJSON', () => name)
    define(tok, 'valueOf', () => name)
    define(tok, Symbol.toPrimitive, () => name)
    define(tok, '__mcpdoType', name)
    return tok
  }

  const typeCache = new Map()
  function typeProxy(name) {
    let p = typeCache.get(name)
    if (p) return p
    const ctor = function (data) {
      return Object.assign({ $type: name }, data || {})
    }
    const special = {
      toString: () => name,
      toJSON: () => name,
      valueOf: () => name,
      __mcpdoType: name,
      name,
    }
    p = new Proxy(ctor, {
      get(target, prop) {
        if (prop === Symbol.toPrimitive) return () => name
        if (typeof prop === 'symbol') return undefined
        if (Object.prototype.hasOwnProperty.call(special, prop)) return special[prop]
        if (prop === 'then' || prop === 'prototype' || prop === 'length') return undefined
        return eventToken(`${name}.${prop}`)
      },
      has() {
        return false
      },
      ownKeys() {
        return ['prototype']
      },
      getOwnPropertyDescriptor(target, prop) {
        return Reflect.getOwnPropertyDescriptor(target, prop)
      },
      apply(target, thisArg, args) {
        return ctor(args[0])
      },
      construct(target, args) {
        return ctor(args[0])
      },
    })
    typeCache.set(name, p)
    return p
  }
  const dollar = new Proxy(
    {},
    {
      get(target, prop) {
        if (typeof prop === 'symbol') return undefined
        if (prop === 'then' || prop === 'toJSON') return undefined
        if (prop === 'toString') return () => '$'
        return typeProxy(prop)
      },
    },
  )
  define(global, '$', dollar)

})
