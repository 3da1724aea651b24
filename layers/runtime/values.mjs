// Checks on every value that crosses the bridge (call arguments out, results out): bounded nesting, so the
// host's decoder cannot be driven into recursion limits, and strings (keys too) that are valid Unicode, so
// the host can encode them. Iterative: a hostile value cannot overflow this stack either.

function describePath(entry, root) {
  const keys = []
  for (let e = entry; e && e.parent; e = e.parent) keys.push(e.key)
  let s = root
  for (let i = keys.length - 1; i >= 0; i--) {
    const k = keys[i]
    s += typeof k === 'number' ? `[${k}]` : /^[A-Za-z_$][\w$]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`
    if (s.length > 200) return `${s.slice(0, 200)}...`
  }
  return s
}

/**
 * The first problem of a parsed JSON `value` as a sentence, or null. `subject` starts the sentence
 * ("Result", "db.create() arguments"); `root` starts the path to the bad string ("result", "arguments").
 */
export function valueProblem(value, maxDepth, subject, root, startDepth = 0) {
  const stack = [{ v: value, depth: startDepth, parent: null, key: null }]
  while (stack.length) {
    const entry = stack.pop()
    const v = entry.v
    if (typeof v === 'string') {
      if (!v.isWellFormed()) {
        return `${subject}: a string that is not valid Unicode (a lone surrogate) at ${describePath(entry, root)}`
      }
      continue
    }
    if (v === null || typeof v !== 'object') continue
    const depth = entry.depth + 1
    if (depth > maxDepth) return `${subject}: nested more than ${maxDepth} levels deep in arrays and objects (the limit)`
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ v: v[i], depth, parent: entry, key: i })
    } else {
      const keys = Object.keys(v)
      for (let i = keys.length - 1; i >= 0; i--) {
        const k = keys[i]
        if (!k.isWellFormed()) {
          return `${subject}: a key that is not valid Unicode (a lone surrogate) at ${describePath(entry, root)}`
        }
        stack.push({ v: v[k], depth, parent: entry, key: k })
      }
    }
  }
  return null
}

/** Text for humans (logs, error messages): lone surrogates become U+FFFD so the host can encode it. */
export function wellFormed(text) {
  const s = String(text)
  return s.isWellFormed() ? s : s.toWellFormed()
}
