// Caller source -> guest JavaScript, with exact positions back into the caller's TypeScript.
//
// Pipeline: original --(trailing object-literal fix: insertions)--> s1 --(type strip: identity, or
// transform + source map)--> s2 --(async wrapper + final-expression capture: insertions)--> generated.
// Each arrow is invertible for (line, column), so every message points at the caller's source.
import { stripTypeScriptTypes } from 'node:module'
import * as acorn from 'acorn'

const ACORN_OPTIONS = {
  ecmaVersion: 'latest',
  sourceType: 'module',
  allowAwaitOutsideFunction: true,
  allowReturnOutsideFunction: true,
  allowImportExportEverywhere: false,
  locations: true,
}

export const RESULT_VAR = '$$mcpdoResult'
// Everything inserted on line 1 before the caller's first character.
export const PREFIX = `(async () => { let ${RESULT_VAR}; `
const SUFFIX = `\n;return ${RESULT_VAR};\n})()`

const WRITE_MEMBERS = {
  db: new Set(['create', 'update', 'delete', 'relate']),
  ai: new Set(['generate', 'batch']),
  api: new Set(['proxy']),
}
const WRITE_GLOBALS = new Set(['send', 'on', 'every'])

export class SourceSyntaxError extends Error {
  constructor(message, line, column) {
    super(message)
    this.line = line
    this.column = column
  }
}

// ---------------------------------------------------------------------------------------------
// Position maps. An insertion list holds {line, col, len} in the *before* text (0-based col).

function lineStarts(text) {
  const starts = [0]
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1)
  return starts
}

function posOf(starts, offset) {
  let lo = 0
  let hi = starts.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if (starts[mid] <= offset) lo = mid
    else hi = mid - 1
  }
  return { line: lo + 1, col: offset - starts[lo] }
}

// Apply insertions (sorted by offset, none containing newlines) and return the new text plus the list.
function insertAll(text, inserts) {
  const starts = lineStarts(text)
  const sorted = [...inserts].sort((a, b) => a.offset - b.offset)
  let out = ''
  let last = 0
  const list = []
  for (const ins of sorted) {
    out += text.slice(last, ins.offset) + ins.text
    last = ins.offset
    const p = posOf(starts, ins.offset)
    list.push({ line: p.line, col: p.col, len: ins.text.length })
  }
  out += text.slice(last)
  return { text: out, list }
}

// (line, 0-based col) after insertions -> before insertions.
function unInsert(list, line, col) {
  let shift = 0
  let result = col
  for (const ins of list) {
    if (ins.line !== line) continue
    const genStart = ins.col + shift
    if (col >= genStart + ins.len) result -= ins.len
    else if (col >= genStart) return ins.col
    shift += ins.len
  }
  return result
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

function decodeMappings(mappings) {
  // Returns per generated line a sorted array of [genCol, srcLine(0-based), srcCol].
  const lines = []
  let srcLine = 0
  let srcCol = 0
  let srcIdx = 0
  for (const lineText of mappings.split(';')) {
    const segs = []
    let genCol = 0
    if (lineText) {
      for (const seg of lineText.split(',')) {
        if (!seg) continue
        const vals = []
        let value = 0
        let shift = 0
        for (const ch of seg) {
          const digit = B64.indexOf(ch)
          value += (digit & 31) << shift
          if (digit & 32) shift += 5
          else {
            vals.push(value & 1 ? -(value >> 1) : value >> 1)
            value = 0
            shift = 0
          }
        }
        genCol += vals[0]
        if (vals.length >= 4) {
          srcIdx += vals[1]
          srcLine += vals[2]
          srcCol += vals[3]
          segs.push([genCol, srcLine, srcCol])
        }
      }
    }
    lines.push(segs)
  }
  return lines
}

function sourceMapLookup(decoded, line, col) {
  // line 1-based, col 0-based, in the transformed text. Nearest segment at or before, else line start.
  for (let l = line - 1; l >= 0; l--) {
    const segs = decoded[l]
    if (!segs || segs.length === 0) continue
    let best = null
    for (const s of segs) {
      if (l === line - 1 && s[0] > col) break
      best = s
    }
    if (best) return { line: best[1] + 1, col: l === line - 1 ? best[2] + (col - best[0]) : best[2] }
    if (l === line - 1) return { line: segs[0][1] + 1, col: segs[0][2] }
  }
  return { line, col }
}

// ---------------------------------------------------------------------------------------------

const STRIP_WRAP_HEAD = 'async function $$mcpdoMain() {'
const STRIP_WRAP_TAIL = '\n}'

function stripOnly(code) {
  try {
    return stripTypeScriptTypes(code, { mode: 'strip' })
  } catch (err) {
    // The stripper parses a module, where a top-level `return` is illegal: strip it as a function body
    // (the head sits on line 1 and is sliced off again, so every position is kept).
    if (err && err.code === 'ERR_INVALID_TYPESCRIPT_SYNTAX' && /return/i.test(String(err.message))) {
      const out = stripTypeScriptTypes(STRIP_WRAP_HEAD + code + STRIP_WRAP_TAIL, { mode: 'strip' })
      return out.slice(STRIP_WRAP_HEAD.length, out.length - STRIP_WRAP_TAIL.length)
    }
    throw err
  }
}

function tsStrip(code) {
  try {
    return { text: stripOnly(code), map: null }
  } catch (err) {
    if (err && err.code === 'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX') {
      const out = stripTypeScriptTypes(code, { mode: 'transform', sourceMap: true })
      const marker = '//# sourceMappingURL=data:application/json;base64,'
      const at = out.lastIndexOf(marker)
      let decoded = null
      if (at >= 0) {
        const json = JSON.parse(Buffer.from(out.slice(at + marker.length).trim(), 'base64').toString('utf8'))
        decoded = decodeMappings(json.mappings || '')
      }
      return { text: at >= 0 ? out.slice(0, at) : out, map: decoded }
    }
    throw err
  }
}

function isEofMessage(msg) {
  return /<eof>|end of file|Unexpected eof/i.test(msg)
}

// The TypeScript stripper reports no position: find the shortest prefix that already fails with a
// non end-of-input error; the offending token starts there.
function locateTsSyntaxError(code) {
  let lo = 1
  let hi = code.length
  const failsHere = (n) => {
    try {
      stripTypeScriptTypes(code.slice(0, n), { mode: 'transform' })
      return false
    } catch (err) {
      return !isEofMessage(String(err && err.message))
    }
  }
  if (!failsHere(hi)) return posOf(lineStarts(code), Math.max(0, code.trimEnd().length - 1))
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (failsHere(mid)) hi = mid
    else lo = mid + 1
  }
  return posOf(lineStarts(code), Math.max(0, lo - 1))
}

// Node's stripper puts the position in the error's stack, before the message: ":LINE", the source,
// and a caret line under the offending token (no caret at end of input).
function tsErrorPosition(err, code) {
  const stack = String((err && err.stack) || '')
  const head = stack.split(/SyntaxError/)[0]
  const m = /^:(\d+)\n/.exec(head)
  if (!m) return null
  const line = Number(m[1])
  const lines = code.split('\n')
  if (line < 1 || line > lines.length) return null
  const rest = head.slice(m[0].length).split('\n')
  for (let i = 1; i < rest.length; i++) {
    if (/^\s*\^+\s*$/.test(rest[i]) && rest[i].trim()) return { line, col: rest[i].indexOf('^') }
  }
  return { line, col: lines[line - 1].replace(/\s+$/, '').length }
}

function acornMessage(err) {
  return String(err.message).replace(/\s*\(\d+:\d+\)$/, '')
}

// A script that ends in `{ key: value, ... }` is a syntax error as a block; retry it as an expression.
function trailingObjectFix(code) {
  const trimmed = code.replace(/[\s;]+$/, '')
  if (!trimmed.endsWith('}')) return null
  let candidates = 0
  for (let p = trimmed.lastIndexOf('{'); p >= 0 && candidates < 64; p = trimmed.lastIndexOf('{', p - 1)) {
    candidates++
    const attempt = insertAll(code, [
      { offset: p, text: ';(' },
      { offset: trimmed.length, text: ')' },
    ])
    try {
      const stripped = stripOnly(attempt.text)
      const ast = acorn.parse(stripped, ACORN_OPTIONS)
      const last = ast.body[ast.body.length - 1]
      if (last && last.type === 'ExpressionStatement' && last.expression.type === 'ObjectExpression') {
        return attempt
      }
    } catch {
      // not this brace
    }
    if (p === 0) break
  }
  return null
}

function memberName(node) {
  if (node.type !== 'MemberExpression') return null
  if (node.object.type !== 'Identifier') return null
  let prop = null
  if (!node.computed && node.property.type === 'Identifier') prop = node.property.name
  else if (node.computed && node.property.type === 'Literal' && typeof node.property.value === 'string') {
    prop = node.property.value
  }
  if (prop === null) return null
  return [node.object.name, prop]
}

function isWriteFetch(call) {
  const opts = call.arguments[1]
  if (!opts) return false
  if (opts.type !== 'ObjectExpression') return false
  for (const p of opts.properties) {
    if (p.type !== 'Property') return true // spread: cannot tell, be conservative
    const key = p.key.type === 'Identifier' && !p.computed ? p.key.name : p.key.value
    if (key !== 'method') continue
    if (p.value.type === 'Literal' && typeof p.value.value === 'string') {
      return p.value.value.toUpperCase() !== 'GET'
    }
    return true
  }
  return false
}

function writeCallName(call) {
  const callee = call.callee.type === 'ChainExpression' ? call.callee.expression : call.callee
  if (callee.type === 'Identifier' && WRITE_GLOBALS.has(callee.name)) return callee.name
  const m = memberName(callee)
  if (!m) return null
  const [obj, prop] = m
  if (WRITE_MEMBERS[obj] && WRITE_MEMBERS[obj].has(prop)) return `${obj}.${prop}`
  if (obj === 'api' && prop === 'fetch' && isWriteFetch(call)) return 'api.fetch'
  return null
}

function walk(node, visit) {
  if (!node || typeof node.type !== 'string') return
  visit(node)
  for (const key in node) {
    if (key === 'loc' || key === 'type' || key === 'start' || key === 'end') continue
    const v = node[key]
    if (Array.isArray(v)) {
      for (const c of v) if (c && typeof c.type === 'string') walk(c, visit)
    } else if (v && typeof v.type === 'string') walk(v, visit)
  }
}

function parseOrThrow(text, toOriginal) {
  try {
    return acorn.parse(text, ACORN_OPTIONS)
  } catch (err) {
    if (err && err.loc) {
      const p = toOriginal(err.loc.line, err.loc.column)
      throw new SourceSyntaxError(acornMessage(err), p.line, p.col + 1)
    }
    throw new SourceSyntaxError(String(err && err.message), null, null)
  }
}

/**
 * Prepare a caller script.
 * Returns { js, toOriginal / errorToOriginal(line, col0) -> {line, col0}, violations: [[name, line]] }.
 * Throws SourceSyntaxError.
 */
export function prepareScript(code, { readonly = false } = {}) {
  let a = { text: code, list: [] }
  let stripped
  try {
    stripped = tsStrip(code)
  } catch (err) {
    if (!(err && err.code === 'ERR_INVALID_TYPESCRIPT_SYNTAX')) throw err
    const fixed = trailingObjectFix(code)
    if (!fixed) {
      const at = tsErrorPosition(err, code) || locateTsSyntaxError(code)
      let message = String(err.message)
      try {
        acorn.parse(code, ACORN_OPTIONS)
      } catch (aerr) {
        // Plain JavaScript errors read better in acorn's words, when it stops at the same place or later.
        if (aerr && aerr.loc && (aerr.loc.line > at.line || (aerr.loc.line === at.line && aerr.loc.column >= at.col))) {
          throw new SourceSyntaxError(acornMessage(aerr), aerr.loc.line, aerr.loc.column + 1)
        }
      }
      if (message.length === 0) message = 'Invalid syntax'
      throw new SourceSyntaxError(message, at.line, at.col + 1)
    }
    a = fixed
    stripped = tsStrip(fixed.text)
  }
  const s2 = stripped.text
  const srcMap = stripped.map

  // s2 (line, col0) -> original
  const s2ToOriginal = (line, col) => {
    let p = { line, col }
    if (srcMap) p = sourceMapLookup(srcMap, line, col)
    return { line: p.line, col: unInsert(a.list, p.line, p.col) }
  }

  const ast = parseOrThrow(s2, s2ToOriginal)

  const inserts = [{ offset: 0, text: PREFIX }]
  const blanks = [] // [start, end) ranges replaced by spaces (export keywords)
  for (const stmt of ast.body) {
    if (stmt.type === 'ImportDeclaration') {
      const p = s2ToOriginal(stmt.loc.start.line, stmt.loc.start.column)
      throw new SourceSyntaxError(
        `import is not available in scripts (cannot import '${stmt.source.value}')`, p.line, p.col + 1)
    }
    if (stmt.type === 'ExportNamedDeclaration' && stmt.declaration) {
      blanks.push([stmt.start, stmt.declaration.start])
    } else if (stmt.type === 'ExportDefaultDeclaration' || stmt.type === 'ExportNamedDeclaration' ||
      stmt.type === 'ExportAllDeclaration') {
      const p = s2ToOriginal(stmt.loc.start.line, stmt.loc.start.column)
      throw new SourceSyntaxError('export is only available in modules', p.line, p.col + 1)
    }
  }

  // Final value: the last top-level expression statement, or a trailing block that is an object literal.
  let lastExpr = null
  for (let i = ast.body.length - 1; i >= 0; i--) {
    const s = ast.body[i]
    if (s.type === 'ExpressionStatement') {
      lastExpr = s
      break
    }
  }
  let tail = ast.body.length ? ast.body[ast.body.length - 1] : null
  if (tail && tail.type === 'EmptyStatement') {
    for (let i = ast.body.length - 1; i >= 0; i--) {
      if (ast.body[i].type !== 'EmptyStatement') {
        tail = ast.body[i]
        break
      }
    }
  }
  let objectTail = null
  if (tail && tail.type === 'BlockStatement') {
    try {
      const expr = acorn.parseExpressionAt(s2, tail.start, ACORN_OPTIONS)
      if (expr.type === 'ObjectExpression' && expr.end === tail.end) objectTail = tail
    } catch {
      // a real block
    }
  }
  if (objectTail) {
    inserts.push({ offset: objectTail.start, text: `${RESULT_VAR} = (` })
    inserts.push({ offset: objectTail.end, text: ');' })
  } else if (lastExpr) {
    inserts.push({ offset: lastExpr.expression.start, text: `${RESULT_VAR} = (` })
    inserts.push({ offset: lastExpr.expression.end, text: ')' })
  }

  let base = s2
  if (blanks.length) {
    let chars = base.split('')
    for (const [s, e] of blanks) for (let i = s; i < e; i++) if (chars[i] !== '\n') chars[i] = ' '
    base = chars.join('')
    chars = null
  }
  const gen = insertAll(base, inserts)
  const js = gen.text + SUFFIX

  const toOriginal = (line, col) => {
    const c = unInsert(gen.list, line, col)
    return s2ToOriginal(line, c)
  }

  // QuickJS places a `new X(...)` frame at the opening parenthesis; callers expect the `new`.
  const newSites = new Map()
  let starts = null
  const s2Starts = () => {
    if (!starts) starts = lineStarts(s2)
    return starts
  }
  walk(ast, (node) => {
    if (node.type !== 'NewExpression') return
    let i = node.callee.end
    while (i < node.end && s2[i] !== '(') i++
    if (i >= node.end) return
    const p = posOf(s2Starts(), i)
    newSites.set(`${p.line}:${p.col}`, { line: node.loc.start.line, col: node.loc.start.column })
  })
  const errorToOriginal = (line, col) => {
    const c = unInsert(gen.list, line, col)
    const site = newSites.get(`${line}:${c}`)
    if (site) return s2ToOriginal(site.line, site.col)
    return s2ToOriginal(line, c)
  }

  const violations = []
  if (readonly) {
    walk(ast, (node) => {
      if (node.type !== 'CallExpression') return
      const name = writeCallName(node)
      if (name) {
        const p = s2ToOriginal(node.loc.start.line, node.loc.start.column)
        violations.push([name, p.line, node.start])
      }
    })
    violations.sort((x, y) => x[2] - y[2])
  }
  return { js, toOriginal, errorToOriginal, violations: violations.map(([n, l]) => [n, l]) }
}
