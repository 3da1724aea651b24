// Compiled into the guest on first use; evaluates to a function of (globalThis, define, inner).
;(function (global, define, inner) {
  'use strict'
  const {
    ObjectHasOwn, ProxyCtor, ReflectGetOwnPropertyDescriptor, SymbolToPrimitive, MapCtor, MapGet, MapSet, MapHas,
    JSONstringify, ReflectApply, StringSlice,
  } = inner.prim
  const { hostSync, newList, push } = inner

  // ------------------------------------------------------------------------------------------
  // What `$.Type(props)` was given: (type name, own keys) for the host's hints on properties a schema.org type
  // does not have. Each distinct record goes to the host once, as JSON text built from strings only (no array of
  // the guest's realm is serialised, so no toJSON or index getter the caller planted runs); the first MAX_RECORDS,
  // MAX_KEYS keys each, MAX_CHARS characters per name. The list lives here and in the runner, out of reach.
  const MAX_RECORDS = 64
  const MAX_KEYS = 64
  const MAX_CHARS = 100
  const recorded = new MapCtor()
  let records = 0
  const clip = (text) => (text.length > MAX_CHARS ? ReflectApply(StringSlice, text, [0, MAX_CHARS]) : text)
  function record(name, keys) {
    let text = '[' + JSONstringify(clip(name))
    for (let i = 0; i < keys.n; i++) text += ',' + JSONstringify(keys[i])
    text += ']'
    if (MapHas(recorded, text)) return
    MapSet(recorded, text, true)
    records += 1
    hostSync('constructed', text)
  }
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
      const keys = records < MAX_RECORDS ? newList() : null
      if (data && typeof data === 'object') {
        for (const key in data) {
          if (!ObjectHasOwn(data, key)) continue
          out[key] = data[key]
          if (keys !== null && keys.n < MAX_KEYS) push(keys, clip(key))
        }
      }
      if (keys !== null && keys.n > 0) record(name, keys)
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
