// Compiled into the guest on first use; evaluates to a function of (globalThis, define, inner).
;(function (global, define, inner) {
  'use strict'
  const { JSONstringify, ErrorCtor, StringCtor } = inner.prim
  const hostSync = inner.hostSync
  // ------------------------------------------------------------------------------------------
  // Formatting for console output

  function formatValue(v, top) {
    if (typeof v === 'string') return top ? v : JSONstringify(v)
    if (v === undefined) return 'undefined'
    if (v === null) return 'null'
    if (typeof v === 'bigint') return `${v}n`
    if (typeof v === 'symbol') return v.toString()
    if (typeof v === 'function') {
      if (v.__mcpdoType) return v.__mcpdoType
      return `[Function: ${v.name || 'anonymous'}]`
    }
    if (typeof v !== 'object') return String(v)
    if (v instanceof ErrorCtor) return `${v.name || 'Error'}: ${v.message}`
    if (v instanceof Date) return isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString()
    try {
      const seen = []
      return JSONstringify(v, function (key, value) {
        if (typeof value === 'bigint') return `${value}n`
        if (typeof value === 'function') return value.__mcpdoType || `[Function: ${value.name || 'anonymous'}]`
        if (value === undefined) return undefined
        if (value instanceof ErrorCtor) return `${value.name}: ${value.message}`
        if (value instanceof Map) return { '[Map]': Array.from(value.entries()) }
        if (value instanceof Set) return { '[Set]': Array.from(value.values()) }
        if (value && typeof value === 'object') {
          if (seen.indexOf(value) >= 0) return '[Circular]'
          seen.push(value)
        }
        return value
      })
    } catch (e) {
      return String(v)
    }
  }

  function format(args) {
    let text = ''
    for (let i = 0; i < args.length; i++) text += (i ? ' ' : '') + formatValue(args[i], true)
    return text
  }

  const console = {}
  for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
    define(console, level, function (...args) {
      // As JSON: the engine hands strings to the host NUL-terminated.
      hostSync('log', level, JSONstringify(format(args)))
    })
  }
  define(console, 'trace', console.debug)
  define(console, 'table', console.log)
  define(console, 'dir', console.log)
  define(global, 'console', console)

  inner.formatValue = formatValue
})
