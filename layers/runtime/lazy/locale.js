// Compiled into the guest on first use; evaluates to a function of (globalThis, define).
;(function (global, define) {
  'use strict'
  // ------------------------------------------------------------------------------------------
  // en-US locale formatting for Date and Number

  const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September',
    'October', 'November', 'December']
  const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday']
  const pad2 = (n) => (n < 10 ? '0' : '') + n

  function dateParts(d, utc) {
    return utc
      ? { y: d.getUTCFullYear(), m: d.getUTCMonth(), d: d.getUTCDate(), wd: d.getUTCDay(), h: d.getUTCHours(),
        mi: d.getUTCMinutes(), s: d.getUTCSeconds() }
      : { y: d.getFullYear(), m: d.getMonth(), d: d.getDate(), wd: d.getDay(), h: d.getHours(),
        mi: d.getMinutes(), s: d.getSeconds() }
  }

  function formatDate(date, options, defaults) {
    if (isNaN(date.getTime())) return 'Invalid Date'
    let o = Object.assign({}, options || {})
    const utc = o.timeZone === 'UTC' || o.timeZone === 'Etc/UTC' || o.timeZone === 'GMT'
    const p = dateParts(date, utc)
    if (o.dateStyle || o.timeStyle) {
      const ds = o.dateStyle
      const ts = o.timeStyle
      o = { hour12: o.hour12 }
      if (ds === 'full') Object.assign(o, { weekday: 'long', month: 'long', day: 'numeric', year: 'numeric' })
      else if (ds === 'long') Object.assign(o, { month: 'long', day: 'numeric', year: 'numeric' })
      else if (ds === 'medium') Object.assign(o, { month: 'short', day: 'numeric', year: 'numeric' })
      else if (ds === 'short') Object.assign(o, { month: 'numeric', day: 'numeric', year: '2-digit' })
      if (ts) Object.assign(o, { hour: 'numeric', minute: '2-digit' })
      if (ts === 'medium' || ts === 'long' || ts === 'full') o.second = '2-digit'
    }
    const hasDate = o.weekday || o.year || o.month || o.day
    const hasTime = o.hour || o.minute || o.second
    if (!hasDate && !hasTime) {
      if (defaults.date) Object.assign(o, { year: 'numeric', month: 'numeric', day: 'numeric' })
      if (defaults.time) Object.assign(o, { hour: 'numeric', minute: '2-digit', second: '2-digit' })
    }
    let datePart = ''
    if (o.year || o.month || o.day || o.weekday) {
      const year = o.year === '2-digit' ? pad2(p.y % 100) : o.year ? String(p.y) : ''
      const day = o.day === '2-digit' ? pad2(p.d) : o.day ? String(p.d) : ''
      const wd = o.weekday === 'long' ? DAYS[p.wd] : o.weekday === 'short' ? DAYS[p.wd].slice(0, 3)
        : o.weekday === 'narrow' ? DAYS[p.wd][0] : ''
      const textMonth = o.month === 'long' || o.month === 'short' || o.month === 'narrow'
      if (textMonth || (!o.month && !o.day && (o.year || o.weekday))) {
        const month = o.month === 'long' ? MONTHS[p.m] : o.month === 'short' ? MONTHS[p.m].slice(0, 3)
          : o.month === 'narrow' ? MONTHS[p.m][0] : ''
        let md = [month, day].filter(Boolean).join(' ')
        if (year) md = md ? (day ? `${md}, ${year}` : `${md} ${year}`) : year
        datePart = wd ? (md ? `${wd}, ${md}` : wd) : md
      } else {
        const month = o.month === '2-digit' ? pad2(p.m + 1) : o.month ? String(p.m + 1) : ''
        const md = [month, day, year].filter(Boolean).join('/')
        datePart = wd ? (md ? `${wd}, ${md}` : wd) : md
      }
    }
    let timePart = ''
    if (o.hour || o.minute || o.second) {
      const h12 = o.hour12 !== false && o.hourCycle !== 'h23' && o.hourCycle !== 'h24'
      let hour = p.h
      if (h12) hour = hour % 12 === 0 ? 12 : hour % 12
      const hs = o.hour === '2-digit' || (!h12 && o.hour) ? pad2(hour) : String(hour)
      const parts = []
      if (o.hour) parts.push(hs)
      if (o.minute) parts.push(o.hour ? pad2(p.mi) : String(p.mi))
      if (o.second) parts.push(o.minute ? pad2(p.s) : String(p.s))
      timePart = parts.join(':')
      if (o.hour && h12) timePart += p.h < 12 ? ' AM' : ' PM'
      if (o.timeZoneName) timePart += utc ? ' UTC' : ' UTC'
    }
    if (datePart && timePart) {
      const textual = o.month === 'long' || o.month === 'short'
      return textual ? `${datePart} at ${timePart}` : `${datePart}, ${timePart}`
    }
    return datePart || timePart
  }

  define(Date.prototype, 'toLocaleDateString', function (locale, options) {
    return formatDate(this, options, { date: true })
  })
  define(Date.prototype, 'toLocaleTimeString', function (locale, options) {
    return formatDate(this, options, { time: true })
  })
  define(Date.prototype, 'toLocaleString', function (locale, options) {
    return formatDate(this, options, { date: true, time: true })
  })

  function formatNumber(n, options) {
    const o = options || {}
    n = Number(n)
    if (!isFinite(n)) return isNaN(n) ? 'NaN' : n < 0 ? '-∞' : '∞'
    let minF = o.minimumFractionDigits
    let maxF = o.maximumFractionDigits
    if (o.style === 'currency') {
      if (minF === undefined) minF = 2
      if (maxF === undefined) maxF = Math.max(2, minF)
    } else if (o.style === 'percent') {
      n = n * 100
      if (minF === undefined) minF = 0
      if (maxF === undefined) maxF = Math.max(0, minF)
    }
    if (minF === undefined) minF = 0
    if (maxF === undefined) maxF = Math.max(3, minF)
    const neg = n < 0 || Object.is(n, -0)
    let s = Math.abs(n).toFixed(maxF)
    if (s.indexOf('.') >= 0) {
      let [i, f] = s.split('.')
      while (f.length > minF && f.endsWith('0')) f = f.slice(0, -1)
      s = f ? `${i}.${f}` : i
    }
    let [intPart, frac] = s.split('.')
    if (o.useGrouping !== false) intPart = intPart.replace(/\B(?=(\d{3})+(?!\d))/g, ',')
    let out = frac ? `${intPart}.${frac}` : intPart
    if (o.style === 'currency') {
      const symbols = { USD: '$', EUR: '€', GBP: '£', JPY: '¥', CAD: 'CA$', AUD: 'A$', INR: '₹' }
      const cur = String(o.currency || 'USD').toUpperCase()
      out = (symbols[cur] || cur + ' ') + out
    } else if (o.style === 'percent') out += '%'
    return (neg && Number(s) !== 0 ? '-' : '') + out
  }
  define(Number.prototype, 'toLocaleString', function (locale, options) {
    return formatNumber(this, options)
  })

  const Intl = {}
  define(Intl, 'NumberFormat', class NumberFormat {
    constructor(locale, options) {
      define(this, '_o', options || {})
    }
    format(n) {
      return formatNumber(n, this._o)
    }
    resolvedOptions() {
      return Object.assign({ locale: 'en-US' }, this._o)
    }
  })
  define(Intl, 'DateTimeFormat', class DateTimeFormat {
    constructor(locale, options) {
      define(this, '_o', options || {})
    }
    format(d) {
      return formatDate(d === undefined ? new Date() : new Date(d), this._o, { date: true })
    }
    resolvedOptions() {
      return Object.assign({ locale: 'en-US', timeZone: 'UTC' }, this._o)
    }
  })
  define(global, 'Intl', Intl)

})
