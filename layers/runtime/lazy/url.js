// Compiled into the guest on first use; evaluates to a function of (globalThis, define).
;(function (global, define) {
  'use strict'
  const ObjectKeys = Object.keys
  // ------------------------------------------------------------------------------------------
  // URL and URLSearchParams (WHATWG subset)

  const encodeParam = (s) =>
    encodeURIComponent(s).replace(/%20/g, '+').replace(/[!'()~]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())
  const decodeParam = (s) => {
    const t = s.replace(/\+/g, ' ')
    try {
      return decodeURIComponent(t)
    } catch (_) {
      return t
    }
  }

  class URLSearchParams {
    constructor(init) {
      define(this, '_list', [])
      define(this, '_url', null)
      if (init === undefined || init === null) return
      if (typeof init === 'string') this._parse(init)
      else if (init instanceof URLSearchParams) for (const [k, v] of init._list) this._list.push([k, v])
      else if (typeof init === 'object' && typeof init[Symbol.iterator] === 'function') {
        for (const pair of init) {
          const a = Array.from(pair)
          if (a.length !== 2) throw new TypeError('Each query pair must be an iterable [name, value] tuple')
          this._list.push([String(a[0]), String(a[1])])
        }
      } else if (typeof init === 'object') {
        for (const k of ObjectKeys(init)) this._list.push([k, String(init[k])])
      } else this._parse(String(init))
    }
    _parse(s) {
      this._list.length = 0
      if (s.startsWith('?')) s = s.slice(1)
      for (const part of s.split('&')) {
        if (!part) continue
        const i = part.indexOf('=')
        if (i < 0) this._list.push([decodeParam(part), ''])
        else this._list.push([decodeParam(part.slice(0, i)), decodeParam(part.slice(i + 1))])
      }
    }
    _update() {
      if (this._url) {
        const q = this.toString()
        this._url._search = q ? '?' + q : ''
      }
    }
    get size() {
      return this._list.length
    }
    append(k, v) {
      this._list.push([String(k), String(v)])
      this._update()
    }
    delete(k, v) {
      k = String(k)
      for (let i = this._list.length - 1; i >= 0; i--) {
        if (this._list[i][0] === k && (v === undefined || this._list[i][1] === String(v))) this._list.splice(i, 1)
      }
      this._update()
    }
    get(k) {
      k = String(k)
      const e = this._list.find((p) => p[0] === k)
      return e ? e[1] : null
    }
    getAll(k) {
      k = String(k)
      return this._list.filter((p) => p[0] === k).map((p) => p[1])
    }
    has(k, v) {
      k = String(k)
      return this._list.some((p) => p[0] === k && (v === undefined || p[1] === String(v)))
    }
    set(k, v) {
      k = String(k)
      v = String(v)
      const i = this._list.findIndex((p) => p[0] === k)
      if (i < 0) this._list.push([k, v])
      else {
        this._list[i][1] = v
        for (let j = this._list.length - 1; j > i; j--) if (this._list[j][0] === k) this._list.splice(j, 1)
      }
      this._update()
    }
    sort() {
      this._list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      this._update()
    }
    forEach(fn, thisArg) {
      for (const [k, v] of this._list) fn.call(thisArg, v, k, this)
    }
    *entries() {
      for (const [k, v] of this._list) yield [k, v]
    }
    *keys() {
      for (const [k] of this._list) yield k
    }
    *values() {
      for (const [, v] of this._list) yield v
    }
    [Symbol.iterator]() {
      return this.entries()
    }
    toString() {
      return this._list.map(([k, v]) => encodeParam(k) + '=' + encodeParam(v)).join('&')
    }
  }

  const DEFAULT_PORTS = { 'http:': '80', 'https:': '443', 'ws:': '80', 'wss:': '443', 'ftp:': '21' }
  const URL_RE = /^([a-zA-Z][a-zA-Z0-9+.-]*:)(?:\/\/(?:([^:@/?#]*)(?::([^@/?#]*))?@)?(\[[^\]]*\]|[^:/?#]*)(?::(\d*))?)?([^?#]*)(\?[^#]*)?(#.*)?$/

  function normalizePath(path) {
    const out = []
    for (const seg of path.split('/')) {
      if (seg === '..') {
        if (out.length > 1) out.pop()
      } else if (seg !== '.') out.push(seg)
    }
    let p = out.join('/')
    if (path.endsWith('/..') || path.endsWith('/.')) p += '/'
    return p.startsWith('/') ? p : '/' + p
  }

  const encodePath = (p) => p.replace(/[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]/g, (c) => encodeURIComponent(c))
  const encodeQuery = (q) => q.replace(/[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]/g, (c) => encodeURIComponent(c))

  class URL {
    constructor(input, base) {
      input = String(input).trim()
      let m = URL_RE.exec(input)
      if (!m) {
        if (base === undefined) throw new TypeError(`Invalid URL: ${input}`)
        const b = base instanceof URL ? base : new URL(String(base))
        let path = b.pathname
        let search = b.search
        let hash = ''
        let rest = input
        const hi = rest.indexOf('#')
        if (hi >= 0) {
          hash = rest.slice(hi)
          rest = rest.slice(0, hi)
        }
        if (rest.startsWith('//')) {
          m = URL_RE.exec(b.protocol + input)
          if (!m) throw new TypeError(`Invalid URL: ${input}`)
        } else {
          const qi = rest.indexOf('?')
          if (qi >= 0) {
            search = rest.slice(qi)
            rest = rest.slice(0, qi)
          } else if (rest !== '') search = ''
          if (rest.startsWith('/')) path = rest
          else if (rest !== '') path = path.slice(0, path.lastIndexOf('/') + 1) + rest
          const auth = b.username ? b.username + (b.password ? ':' + b.password : '') + '@' : ''
          m = URL_RE.exec(`${b.protocol}//${auth}${b.host}${normalizePath(path)}${search}${hash || ''}`)
          if (!m && hash === '' && rest === '') m = URL_RE.exec(b.href)
        }
      }
      const protocol = m[1].toLowerCase()
      define(this, '_protocol', protocol)
      define(this, '_username', m[2] || '')
      define(this, '_password', m[3] || '')
      define(this, '_hostname', (m[4] || '').toLowerCase())
      const special = protocol in DEFAULT_PORTS
      if (special && !this._hostname) throw new TypeError(`Invalid URL: ${input}`)
      define(this, '_port', m[5] && m[5] !== DEFAULT_PORTS[protocol] ? m[5] : '')
      let path = m[6] || ''
      if (special) path = normalizePath(path || '/')
      define(this, '_pathname', encodePath(path))
      define(this, '_search', m[7] && m[7] !== '?' ? encodeQuery(m[7]) : '')
      define(this, '_hash', m[8] && m[8] !== '#' ? m[8] : '')
      const sp = new URLSearchParams(this._search)
      sp._url = this
      define(this, '_searchParams', sp)
    }
    static canParse(input, base) {
      try {
        new URL(input, base)
        return true
      } catch (_) {
        return false
      }
    }
    get protocol() {
      return this._protocol
    }
    set protocol(v) {
      this._protocol = String(v).replace(/:?$/, ':').toLowerCase()
    }
    get username() {
      return this._username
    }
    set username(v) {
      this._username = String(v)
    }
    get password() {
      return this._password
    }
    set password(v) {
      this._password = String(v)
    }
    get hostname() {
      return this._hostname
    }
    set hostname(v) {
      this._hostname = String(v).toLowerCase()
    }
    get port() {
      return this._port
    }
    set port(v) {
      v = String(v)
      this._port = v === DEFAULT_PORTS[this._protocol] ? '' : v
    }
    get host() {
      return this._hostname + (this._port ? ':' + this._port : '')
    }
    set host(v) {
      const [h, p] = String(v).split(':')
      this._hostname = h.toLowerCase()
      this.port = p || ''
    }
    get origin() {
      return this._protocol in DEFAULT_PORTS ? `${this._protocol}//${this.host}` : 'null'
    }
    get pathname() {
      return this._pathname
    }
    set pathname(v) {
      v = String(v)
      this._pathname = encodePath(v.startsWith('/') ? v : '/' + v)
    }
    get search() {
      return this._search
    }
    set search(v) {
      v = String(v)
      this._search = v && v !== '?' ? encodeQuery(v.startsWith('?') ? v : '?' + v) : ''
      this._searchParams._parse(this._search)
    }
    get searchParams() {
      return this._searchParams
    }
    get hash() {
      return this._hash
    }
    set hash(v) {
      v = String(v)
      this._hash = v && v !== '#' ? (v.startsWith('#') ? v : '#' + v) : ''
    }
    get href() {
      const auth = this._username ? this._username + (this._password ? ':' + this._password : '') + '@' : ''
      const hasAuthority = this._protocol in DEFAULT_PORTS || this._hostname
      return `${this._protocol}${hasAuthority ? '//' : ''}${auth}${this.host}${this._pathname}${this._search}${this._hash}`
    }
    set href(v) {
      const u = new URL(v)
      for (const k of ['_protocol', '_username', '_password', '_hostname', '_port', '_pathname', '_search', '_hash']) {
        this[k] = u[k]
      }
      this._searchParams._parse(this._search)
    }
    toString() {
      return this.href
    }
    toJSON() {
      return this.href
    }
  }
  define(global, 'URL', URL)
  define(global, 'URLSearchParams', URLSearchParams)

})
