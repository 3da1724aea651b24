// Reads one MDXLD document on stdin and prints mdxld's parse() result as JSON.
// With --many, reads a JSON array of documents and prints an array of results.
import { parse } from 'mdxld'

let input = ''
process.stdin.setEncoding('utf8')
for await (const chunk of process.stdin) input += chunk
if (process.argv.includes('--many')) {
  process.stdout.write(JSON.stringify(JSON.parse(input).map((doc) => parse(doc))))
} else {
  process.stdout.write(JSON.stringify(parse(input)))
}
