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
const IMPORT_FN = '$$mcpdoImport'
const DEFAULT_VAR = '$$mcpdoDefault'
// Everything inserted on line 1 before the caller's first character. The program evaluates to an async
// function of the import helper: the prelude calls it (after any preloads) and awaits its value.
const SCRIPT_PREFIX = `(async (${IMPORT_FN}) => { let ${RESULT_VAR}; `
const SCRIPT_SUFFIX = `\n;return ${RESULT_VAR};\n})`
const MODULE_PREFIX = `(async (${IMPORT_FN}) => { `

// The write calls come from the host when the runner starts ({ writes, conditionalWrites }: `db.create`, `send`,
// `api.fetch` when its method is not GET, ...); this keeps no list of its own.

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

function isReturnError(err) {
  return err && err.code === 'ERR_INVALID_TYPESCRIPT_SYNTAX' && /return/i.test(String(err.message))
}

// The end of the import declarations a script starts with (blank and comment lines between them allowed),
// or 0. Read line by line: an import ends on the line with its `from '...'` (or its bare '...'), before any
// comment that follows it on that line.
const IMPORT_START = /^import(\s|\{|\*|'|")/
const IMPORT_END = /(\bfrom\s*|^\s*import\s*)(['"])[^'"\n]*\2\s*;?/

function importEndIn(line) {
  const m = IMPORT_END.exec(line)
  if (!m) return -1
  const rest = line.slice(m.index + m[0].length).trim()
  return rest === '' || rest.startsWith('//') ? m.index + m[0].length : -1
}

function leadingImportsEnd(code) {
  let offset = 0
  let end = 0
  let inside = false
  for (const line of code.split('\n')) {
    const text = line.trim()
    if (!inside && (text === '' || text.startsWith('//'))) {
      offset += line.length + 1
      continue
    }
    if (!inside && !IMPORT_START.test(text)) break
    const at = importEndIn(line)
    inside = at < 0
    if (!inside) end = offset + at
    offset += line.length + 1
  }
  return inside ? 0 : end
}

function stripOnly(code) {
  try {
    return stripTypeScriptTypes(code, { mode: 'strip' })
  } catch (err) {
    if (!isReturnError(err)) throw err
  }
  // The stripper parses a module, where a top-level `return` is illegal: strip the code as a function body.
  // Its leading imports stay outside, where they are legal: the head goes at the end of the last of them
  // (or on line 1), and strip mode keeps every position, so slicing the head off again moves nothing.
  const at = leadingImportsEnd(code)
  const head = at ? `;${STRIP_WRAP_HEAD}` : STRIP_WRAP_HEAD
  const wrapped = code.slice(0, at) + head + code.slice(at) + STRIP_WRAP_TAIL
  let out
  try {
    out = stripTypeScriptTypes(wrapped, { mode: 'strip' })
  } catch (err) {
    if (err && err.code === 'ERR_INVALID_TYPESCRIPT_SYNTAX' && /import|export/i.test(String(err.message))) {
      const p = tsErrorPosition(err, wrapped) || { line: 1, col: 0 }
      throw new SourceSyntaxError(
        'With a top-level `return`, imports must come first, before any other statement: move it to the ' +
        'top of the script (or end the script with the value instead of `return value`)', p.line, 1)
    }
    throw err
  }
  return out.slice(0, at) + out.slice(at + head.length, out.length - STRIP_WRAP_TAIL.length)
}

function tsStrip(code) {
  try {
    return { text: stripOnly(code), map: null }
  } catch (err) {
    if (err && err.code === 'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX') {
      let out
      try {
        out = stripTypeScriptTypes(code, { mode: 'transform', sourceMap: true })
      } catch (terr) {
        if (!isReturnError(terr)) throw terr
        // Compiling (enum, namespace, parameter properties) needs module code, where `return` is illegal.
        const p = tsErrorPosition(terr, code) || { line: 1, col: 0 }
        throw new SourceSyntaxError(
          'A top-level `return` cannot be combined with TypeScript that has to be compiled (enum, namespace, ' +
          'parameter properties): end the script with the value instead of `return value`', p.line, p.col + 1)
      }
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

function writeCallName(call, sdk) {
  const callee = call.callee.type === 'ChainExpression' ? call.callee.expression : call.callee
  let name = null
  if (callee.type === 'Identifier') name = callee.name
  else {
    const m = memberName(callee)
    if (m) name = `${m[0]}.${m[1]}`
  }
  if (name === null) return null
  if (sdk.writes.includes(name)) return name
  if (sdk.conditionalWrites.includes(name) && isWriteFetch(call)) return name
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

// ---------------------------------------------------------------------------------------------
// ESM: imports become awaited calls of the import helper, exports are collected and returned.

function nameOf(node) {
  return node.type === 'Identifier' ? node.name : String(node.value)
}

function patternNames(node, out) {
  if (!node) return out
  switch (node.type) {
    case 'Identifier':
      out.push(node.name)
      break
    case 'ObjectPattern':
      for (const p of node.properties) patternNames(p.type === 'RestElement' ? p.argument : p.value, out)
      break
    case 'ArrayPattern':
      for (const e of node.elements) patternNames(e, out)
      break
    case 'RestElement':
      patternNames(node.argument, out)
      break
    case 'AssignmentPattern':
      patternNames(node.left, out)
      break
    default:
      break
  }
  return out
}

function declaredNames(decl) {
  if (decl.type === 'VariableDeclaration') {
    const out = []
    for (const d of decl.declarations) patternNames(d.id, out)
    return out
  }
  return decl.id ? [decl.id.name] : []
}

function importCall(spec, names) {
  return `await ${IMPORT_FN}(${JSON.stringify(spec)}, ${JSON.stringify(names)})`
}

function importCode(stmt) {
  let ns = null
  const parts = []
  const names = []
  for (const s of stmt.specifiers) {
    if (s.type === 'ImportNamespaceSpecifier') ns = s.local.name
    else if (s.type === 'ImportDefaultSpecifier') {
      parts.push(`default: ${s.local.name}`)
      names.push('default')
    } else {
      const imported = nameOf(s.imported)
      parts.push(`${JSON.stringify(imported)}: ${s.local.name}`)
      names.push(imported)
    }
  }
  const call = importCall(stmt.source.value, names)
  if (ns) return `;const ${ns} = ${call}${parts.length ? `, { ${parts.join(', ')} } = ${ns}` : ''};`
  if (parts.length) return `;const { ${parts.join(', ')} } = ${call};`
  return `;${call};`
}

// ---------------------------------------------------------------------------------------------
// Line-start hazards (ESLint's no-unexpected-multiline). Scripts are written one statement per line with no
// semicolons; a top-level line that starts with `(`, `[` or a template literal continues the line before in
// JavaScript (`await db.create(...)` then `(await db.list('X')).length` calls the create's result). At the
// top level each such line is taken as the new statement its writer meant, with a warning naming it; inside
// functions, classes and blocks JavaScript's rules stay untouched.

// Nodes below a top-level statement that are no longer "the top level".
const NESTED = new Set([
  'FunctionExpression', 'ArrowFunctionExpression', 'FunctionDeclaration', 'ClassExpression',
  'ClassDeclaration', 'BlockStatement', 'StaticBlock',
])

function walkTopLevel(node, visit, root = true) {
  if (!node || typeof node.type !== 'string') return
  // An arrow with an expression body is still the top-level line it is written on (`const f = () => x`).
  const expressionArrow = node.type === 'ArrowFunctionExpression' && node.expression
  if (!root && !expressionArrow && (NESTED.has(node.type) || /Statement$/.test(node.type))) return
  visit(node)
  for (const key in node) {
    if (key === 'loc' || key === 'type' || key === 'start' || key === 'end') continue
    const v = node[key]
    if (Array.isArray(v)) {
      for (const c of v) if (c && typeof c.type === 'string') walkTopLevel(c, visit, false)
    } else if (v && typeof v.type === 'string') walkTopLevel(v, visit, false)
  }
}

// The `(`, `[` or backtick that continues `node` from an earlier line, as the first thing on its line.
function hazardOf(text, node) {
  let from
  let token
  if (node.type === 'CallExpression' && !node.optional) [from, token] = [node.callee.end, '(']
  else if (node.type === 'MemberExpression' && node.computed && !node.optional) [from, token] = [node.object.end, '[']
  else if (node.type === 'TaggedTemplateExpression') [from, token] = [node.tag.end, '`']
  else return null
  let p = from
  while (p < node.end && /\s/.test(text[p])) p++
  if (text[p] !== token) return null
  const lineStart = text.lastIndexOf('\n', p - 1) + 1
  if (lineStart <= from || text.slice(lineStart, p).trim() !== '') return null
  return { offset: p, token, previousEnd: from }
}

// Every top-level hazard split off with a `;`, each only where the result still parses. Returns null when
// there is none, else { text, ast, list (the insertions), hazards }.
function splitLineStartHazards(text, ast) {
  const found = []
  for (const stmt of ast.body) {
    walkTopLevel(stmt, (node) => {
      const hazard = hazardOf(text, node)
      if (hazard) found.push(hazard)
    })
  }
  if (!found.length) return null
  found.sort((x, y) => x.offset - y.offset)
  // Usually every split parses: one parse for all of them. Otherwise each is tried on its own, the first
  // MAX_HAZARD_TRIES only, so a script of thousands of such lines costs no more than a few parses.
  const all = split(text, found)
  if (all) return { ...all, hazards: found }
  const kept = []
  let result = null
  for (const hazard of found.slice(0, MAX_HAZARD_TRIES)) {
    const attempt = split(text, [...kept, hazard])
    if (!attempt) continue // not a clean split: JavaScript's reading stands
    result = attempt
    kept.push(hazard)
  }
  return kept.length ? { ...result, hazards: kept } : null
}

const MAX_HAZARD_TRIES = 16
// Each split line is named in a warning, up to this many; the rest are counted in one more.
const MAX_HAZARD_WARNINGS = 16

function split(text, hazards) {
  const attempt = insertAll(text, hazards.map((h) => ({ offset: h.offset, text: ';' })))
  try {
    return { ...attempt, ast: acorn.parse(attempt.text, ACORN_OPTIONS) }
  } catch {
    return null
  }
}

function hazardWarning(hazard, toOriginal, starts) {
  const at = posOf(starts, hazard.offset)
  const before = posOf(starts, hazard.previousEnd)
  const line = toOriginal(at.line, at.col).line
  const previous = toOriginal(before.line, before.col).line
  const token = hazard.token === '`' ? 'a template literal' : `"${hazard.token}"`
  return `Line ${line} starts with ${token}: it ran as a new statement. JavaScript alone would continue ` +
    `line ${previous} with it; end line ${previous} with ";" and join the lines if that is what you meant`
}

const GENERIC_CALL = /<[^;\n]*>\s*\(/

const CACHE_ENTRIES = 256
const CACHE_CHARS = 32 * 1024 * 1024
const cache = new Map()
let cacheChars = 0

/**
 * Prepare caller code: a script (final expression returned) or a module (exports returned).
 * Returns { js, exports, toOriginal / errorToOriginal(line, col0) -> {line, col0}, violations: [[name, line]] }:
 * `js` evaluates to an async function of the import helper. Throws SourceSyntaxError.
 * Results (and syntax errors) are cached by source.
 */
export function prepare(code, { kind = 'script', readonly = false, sdk = null } = {}) {
  if (readonly && !sdk) throw new Error('prepare: a read-only check needs the host\'s write calls (sdk)')
  const rules = readonly ? `${sdk.writes.join(',')};${sdk.conditionalWrites.join(',')}` : ''
  const key = (kind === 'module' ? 'm' : 's') + (readonly ? '1' : '0') + rules + '\n' + code
  const hit = cache.get(key)
  if (hit) {
    cache.delete(key)
    cache.set(key, hit)
    if (hit.error) throw hit.error
    return hit
  }
  let entry
  try {
    entry = prepareUncached(code, kind === 'module', readonly, sdk)
  } catch (err) {
    if (!(err instanceof SourceSyntaxError)) throw err
    entry = { error: err }
  }
  cache.set(key, entry)
  cacheChars += key.length
  while (cache.size > CACHE_ENTRIES || (cacheChars > CACHE_CHARS && cache.size > 1)) {
    const oldest = cache.keys().next().value
    cache.delete(oldest)
    cacheChars -= oldest.length
  }
  if (entry.error) throw entry.error
  return entry
}

export function prepareScript(code, { readonly = false, sdk = null } = {}) {
  return prepare(code, { kind: 'script', readonly, sdk })
}

function prepareUncached(code, isModule, readonly, sdk) {
  let a = { text: code, list: [] }
  let s2 = null
  let srcMap = null
  let ast = null
  // Plain JavaScript needs no type stripping (a generic call such as `f<T>(x)` is also valid JavaScript
  // with another meaning: anything that looks like one goes through the stripper).
  if (!GENERIC_CALL.test(code)) {
    try {
      ast = acorn.parse(code, ACORN_OPTIONS)
      s2 = code
    } catch {
      ast = null
    }
  }
  if (!ast) {
    let stripped
    try {
      stripped = tsStrip(code)
    } catch (err) {
      if (!(err && err.code === 'ERR_INVALID_TYPESCRIPT_SYNTAX')) throw err
      const fixed = isModule ? null : trailingObjectFix(code)
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
    s2 = stripped.text
    srcMap = stripped.map
  }

  // s2 (line, col0) -> original
  let s2ToOriginal = (line, col) => {
    let p = { line, col }
    if (srcMap) p = sourceMapLookup(srcMap, line, col)
    return { line: p.line, col: unInsert(a.list, p.line, p.col) }
  }

  if (!ast) ast = parseOrThrow(s2, s2ToOriginal)

  // One more invertible layer: the `;` before each top-level line-start hazard.
  const warnings = []
  const split = splitLineStartHazards(s2, ast)
  if (split) {
    const stripped = s2ToOriginal
    const starts = lineStarts(s2)
    for (const hazard of split.hazards.slice(0, MAX_HAZARD_WARNINGS)) {
      warnings.push(hazardWarning(hazard, stripped, starts))
    }
    const more = split.hazards.length - MAX_HAZARD_WARNINGS
    if (more > 0) warnings.push(`${more} more lines start the same way and ran as new statements too`)
    s2ToOriginal = (line, col) => stripped(line, unInsert(split.list, line, col))
    s2 = split.text
    ast = split.ast
  }

  const fail = (node, message) => {
    const p = s2ToOriginal(node.loc.start.line, node.loc.start.column)
    throw new SourceSyntaxError(message, p.line, p.col + 1)
  }
  const inserts = [{ offset: 0, text: isModule ? MODULE_PREFIX : SCRIPT_PREFIX }]
  const blanks = [] // [start, end) ranges replaced by spaces (import/export syntax)
  const exported = [] // [name, local expression], in declaration order
  const addExport = (name, local, node) => {
    if (exported.some((e) => e[0] === name)) fail(node, `Duplicate export '${name}'`)
    exported.push([name, local])
  }
  let reexports = 0
  for (const stmt of ast.body) {
    if (stmt.type === 'ImportDeclaration') {
      blanks.push([stmt.start, stmt.end])
      inserts.push({ offset: stmt.start, text: importCode(stmt) })
    } else if (stmt.type === 'ExportNamedDeclaration') {
      if (stmt.declaration) {
        blanks.push([stmt.start, stmt.declaration.start])
        for (const name of declaredNames(stmt.declaration)) addExport(name, name, stmt)
      } else if (stmt.source) {
        const tmp = `$$mcpdoReexport${++reexports}`
        blanks.push([stmt.start, stmt.end])
        const names = stmt.specifiers.map((s) => nameOf(s.local))
        inserts.push({ offset: stmt.start, text: `;const ${tmp} = ${importCall(stmt.source.value, names)};` })
        for (const s of stmt.specifiers) {
          addExport(nameOf(s.exported), `${tmp}[${JSON.stringify(nameOf(s.local))}]`, stmt)
        }
      } else {
        blanks.push([stmt.start, stmt.end])
        for (const s of stmt.specifiers) addExport(nameOf(s.exported), s.local.name, stmt)
      }
    } else if (stmt.type === 'ExportDefaultDeclaration') {
      const d = stmt.declaration
      blanks.push([stmt.start, d.start])
      if ((d.type === 'FunctionDeclaration' || d.type === 'ClassDeclaration') && d.id) {
        addExport('default', d.id.name, stmt)
      } else {
        inserts.push({ offset: d.start, text: `const ${DEFAULT_VAR} = ` })
        addExport('default', DEFAULT_VAR, stmt)
      }
    } else if (stmt.type === 'ExportAllDeclaration') {
      if (!stmt.exported) {
        fail(stmt, `export * is not supported: name the exports (export { a, b } from '${stmt.source.value}')`)
      }
      const tmp = `$$mcpdoReexport${++reexports}`
      blanks.push([stmt.start, stmt.end])
      inserts.push({ offset: stmt.start, text: `;const ${tmp} = ${importCall(stmt.source.value, [])};` })
      addExport(nameOf(stmt.exported), tmp, stmt)
    }
  }

  // `import('<$id>')` loads a stored module like a static import does: through the import helper.
  walk(ast, (node) => {
    if (node.type !== 'ImportExpression') return
    blanks.push([node.start, node.start + 'import'.length])
    inserts.push({ offset: node.start, text: IMPORT_FN })
  })

  let suffix
  if (isModule) {
    suffix = `\n;return { ${exported.map(([n, l]) => `${JSON.stringify(n)}: ${l}`).join(', ')} };\n})`
  } else {
    suffix = SCRIPT_SUFFIX
    finalValueInserts(s2, ast, inserts)
  }

  let base = s2
  if (blanks.length) {
    let chars = base.split('')
    for (const [s, e] of blanks) for (let i = s; i < e; i++) if (chars[i] !== '\n') chars[i] = ' '
    base = chars.join('')
    chars = null
  }
  const gen = insertAll(base, inserts)
  const js = gen.text + suffix

  const toOriginal = (line, col) => {
    const c = unInsert(gen.list, line, col)
    return s2ToOriginal(line, c)
  }

  // QuickJS places a `new X(...)` or `f(...)` frame at the opening parenthesis; callers expect the start.
  const newSites = new Map()
  let starts = null
  const s2Starts = () => {
    if (!starts) starts = lineStarts(s2)
    return starts
  }
  walk(ast, (node) => {
    if (node.type !== 'NewExpression' && node.type !== 'CallExpression') return
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
      const name = writeCallName(node, sdk)
      if (name) {
        const p = s2ToOriginal(node.loc.start.line, node.loc.start.column)
        violations.push([name, p.line, node.start])
      }
    })
    violations.sort((x, y) => x[2] - y[2])
  }
  return {
    js,
    exports: exported.map((e) => e[0]),
    toOriginal,
    errorToOriginal,
    violations: violations.map(([n, l]) => [n, l]),
    warnings,
  }
}

// Final value of a script: the last top-level expression statement (line-start hazards already split off),
// or a trailing block that is an object literal.
function finalValueInserts(s2, ast, inserts) {
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
}
