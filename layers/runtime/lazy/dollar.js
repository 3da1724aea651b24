// Compiled into the guest on first use; evaluates to a function of (globalThis, define, inner).
;(function (global, define, inner) {
  'use strict'
  const { ObjectHasOwn, ProxyCtor, ReflectGetOwnPropertyDescriptor, SymbolToPrimitive, MapCtor, MapGet, MapSet } =
    inner.prim
  // ------------------------------------------------------------------------------------------
  // $: types, constructors and event tokens

  function eventToken(name) {
    const tok = {}
    define(tok, 'toString', () => name)
    define(tok, 'toJSON', () => name)
    define(tok, 'valueOf', () => name)
    define(tok, SymbolToPrimitive, () => name)
    define(tok, '__mcpdoType', name)
    return tok
  }

  const typeCache = new MapCtor()
  function typeProxy(name) {
    let p = MapGet(typeCache, name)
    if (p) return p
    const ctor = function (data) {
      const out = { $type: name }
      if (data && typeof data === 'object') {
        for (const key in data) if (ObjectHasOwn(data, key)) out[key] = data[key]
      }
      return out
    }
    const special = {
      __proto__: null,
      toString: () => name,
      toJSON: () => name,
      valueOf: () => name,
      __mcpdoType: name,
      name,
    }
    p = new ProxyCtor(ctor, {
      get(target, prop) {
        if (prop === SymbolToPrimitive) return () => name
        if (typeof prop === 'symbol') return undefined
        if (ObjectHasOwn(special, prop)) return special[prop]
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
        return ReflectGetOwnPropertyDescriptor(target, prop)
      },
      apply(target, thisArg, args) {
        return ctor(args[0])
      },
      construct(target, args) {
        return ctor(args[0])
      },
    })
    MapSet(typeCache, name, p)
    return p
  }
  const dollar = new ProxyCtor(
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
