from __future__ import annotations

import pytest
from mcpdo.errors import InputError
from mcpdo.mdxld import Import, ImportBinding, InvalidModule, ParsedModule, parse_module

from tests.support.seed import reference_modules

CONTEXT = "https://tenant.example"


def seed_modules() -> dict[str, str]:
    return reference_modules()


def parse(body: str, head: str = "$id: /m/test\n") -> ParsedModule:
    return parse_module(f"---\n{head}---\n{body}", CONTEXT)


def code_lines(module: ParsedModule) -> dict[int, str]:
    return {n: line for n, line in enumerate(module.code.split("\n"), 1) if line.strip()}


def assert_line_aligned(module: ParsedModule, text: str) -> None:
    source = text.split("\n")
    code = module.code.split("\n")
    assert len(code) == len(source)
    for number, line in enumerate(code, 1):
        assert line in ("", source[number - 1])


# -- the reference's modules -----------------------------------------------------------------------------


def test_the_reference_workflow_module_is_split_into_its_parts() -> None:
    text = seed_modules()["workflow"]
    module = parse_module(text, CONTEXT)
    assert module.id == "https://platform.do/workflows/order-fulfillment"
    assert module.raw_id == "/workflows/order-fulfillment"
    assert module.type == "Workflow"
    assert module.context == "https://platform.do"
    assert module.data == {
        "title": "Order Fulfillment Workflow",
        "description": "Automated order processing and notification",
    }
    assert module.imports == (
        Import("./components", ("OrderStatus",), (ImportBinding("OrderStatus", "OrderStatus"),), 15),
    )
    assert module.exports == ("config",)
    assert [(c.name, c.props, c.line) for c in module.components] == [("OrderStatus", {"showProgress": "true"}, 20)]
    lines = code_lines(module)
    assert sorted(lines) == [*range(15, 20), *range(21, 40)]
    assert lines[21] == "on($.Order.created, async (order) => {"
    assert lines[32] == "every('0 */6 * * *', async () => {"
    assert lines[39] == "})"
    assert_line_aligned(module, text)
    assert module.prose.startswith("# Order Fulfillment\nThis workflow handles the complete order lifecycle")
    assert "- Shipping coordination" in module.prose
    assert "on($." not in module.prose and "import" not in module.prose


def test_the_reference_agent_module_keeps_its_template_literal_handler_as_code() -> None:
    text = seed_modules()["agent"]
    module = parse_module(text, CONTEXT)
    assert module.id == "https://platform.do/agents/customer-support"
    assert module.type == "Agent"
    lines = code_lines(module)
    assert sorted(lines) == list(range(8, 22))
    assert lines[10] == "prompt: `Respond to: ${ticket.message}`,"
    assert module.prose == "# Customer Support Agent\nHandles customer inquiries and support tickets."
    assert module.components == () and module.imports == () and module.exports == ()


# -- frontmatter -----------------------------------------------------------------------------------------


def test_a_path_id_resolves_against_the_context_and_a_url_id_stays_as_is() -> None:
    assert parse("", "$id: /a/b\n").id == f"{CONTEXT}/a/b"
    assert parse("", "$id: a/b\n").id == f"{CONTEXT}/a/b"
    assert parse("", "$id: /a\n$context: https://x.do/acme/\n").id == "https://x.do/acme/a"
    absolute = parse("", "$id: https://other.do/agents/a\n$context: https://x.do\n")
    assert absolute.id == absolute.raw_id == "https://other.do/agents/a"
    assert parse("", "$id: /a\n").context == CONTEXT
    assert parse("", "$id: /a\n").context_given is None


def test_other_frontmatter_keys_are_kept_as_plain_json_data() -> None:
    module = parse(
        "",
        "$id: /a\n$type: Service\ntags: [a, b]\nnested:\n  deep:\n    n: 1\n"
        "when: 2024-01-15\nflag: yes\nok: true\nnone: null\nhex: 0x10\nratio: 0.5\n"
        "octal: 017\n1: one\n",
    )
    assert module.data == {
        "tags": ["a", "b"],
        "nested": {"deep": {"n": 1}},
        "when": "2024-01-15",
        "flag": "yes",
        "ok": True,
        "none": None,
        "hex": 16,
        "ratio": 0.5,
        "octal": 17,
        "1": "one",
    }
    assert module.frontmatter["$type"] == "Service"
    assert "$id" not in module.data


def test_windows_line_endings_and_a_byte_order_mark_are_accepted() -> None:
    module = parse_module("\ufeff---\r\n$id: /a\r\n---\r\non($.X.y, () => {})\r\n", CONTEXT)
    assert module.id == f"{CONTEXT}/a"
    assert code_lines(module) == {4: "on($.X.y, () => {})"}


@pytest.mark.parametrize("text", ["# Title\non($.A.b, f)\n", "---\n$type: Workflow\n---\n"])
def test_a_module_without_a_header_or_id_is_shown_one_to_copy(text: str) -> None:
    with pytest.raises(InvalidModule) as caught:
        parse_module(text, CONTEXT)
    header = caught.value.message.split("such as:\n", 1)[1]
    assert parse_module(header + "\non($.A.b, () => {})\n", CONTEXT).id == f"{CONTEXT}/workflows/my-workflow"


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("# Title\non($.A.b, f)\n", "Module must start with YAML frontmatter between '---' lines", 1),
        ("", "Module must start with YAML frontmatter between '---' lines", 1),
        ("---\n$id: /a\n# no end\n", "Unterminated frontmatter: the '---' on line 1 has no closing '---' line", 1),
        ("---\n$id: /a\ntitle: [unclosed\n---\n", "Invalid YAML in frontmatter at line 3", 3),
        ("---\n$id: /a\n  bad: indent\n---\n", "Invalid YAML in frontmatter at line 3", 3),
        ("---\n- a\n- b\n---\n", "Frontmatter must be a YAML mapping of keys to values, not a list", 2),
        ("---\njust text\n---\n", "Frontmatter must be a YAML mapping of keys to values, not a str", 2),
        ("---\n$type: Workflow\n---\n", "Frontmatter is missing $id", 2),
        ("---\n---\n", "Frontmatter is missing $id", 2),
        ("---\n$id: 42\n---\n", "Frontmatter $id must be a string, got a number (line 2)", 2),
        ("---\n$id: /a\n$type: [A, B]\n---\n", "Frontmatter $type must be a string, got a list (line 3)", 3),
        ("---\n$id: /a\n$context: {a: 1}\n---\n", "Frontmatter $context must be a string, got a mapping", 3),
        ("---\n$id: not a url\n---\n", "Invalid $id 'not a url' (line 2): expected an absolute URL", 2),
        ("---\n$id: /a/../b\n---\n", "Invalid $id '/a/../b'", 2),
        ("---\n$id: mailto:x\n---\n", "Invalid $id 'mailto:x'", 2),
        ("---\n$id: /a\n$context: platform\n---\n", "Invalid $context 'platform' (line 3)", 3),
        ("---\n$id: /a\nx: !!binary aGVsbG8=\n---\n", "Frontmatter value 'x' has an unsupported YAML type", None),
        ("---\n$id: /a\n? [a, b]\n: c\n---\n", "mapping keys must be plain strings", 3),
        ("---\n$id: /a\nx: !!python/object:os.system {}\n---\n", "Invalid YAML in frontmatter", 3),
    ],
)
def test_an_invalid_module_gets_a_clear_error_naming_what_and_where(text: str, message: str, line: int | None) -> None:
    with pytest.raises(InvalidModule) as caught:
        parse_module(text, CONTEXT)
    assert message in caught.value.message
    assert caught.value.line == line
    assert isinstance(caught.value, InputError)


def test_yaml_aliases_that_expand_too_far_are_refused() -> None:
    lines = ["$id: /a", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 10)]
    with pytest.raises(InvalidModule, match="too large"):
        parse_module("---\n" + "\n".join(lines) + "\n---\n", CONTEXT)


# -- body: prose versus code -----------------------------------------------------------------------------


def test_ordinary_markdown_stays_prose() -> None:
    body = """# Heading
This workflow handles the complete order lifecycle from creation to delivery.

- Automatic customer notifications
* Starred item
1. Numbered item
> A quote with on(things) inside
| col | other |
|-----|-------|
| on(x) | y |

Word(s) are tricky, and db.list() returns an array of orders.
on(the left side of the screen
const values are immutable in this design.
let me explain (briefly) what happens.
await the result, then continue.
if (you want) more, ask for it.
Call send() to publish.
Send an email (or two) to the customer.
<https://example.com> is an autolink.
x = 5 is a fine example.

    indented(code) is documentation
"""
    module = parse(body)
    assert module.code.strip() == ""
    assert module.code_lines == ()
    assert "Word(s) are tricky" in module.prose
    assert "on(the left side" in module.prose


def test_bare_statements_of_every_kind_are_code() -> None:
    body = """Intro text.
const total = 1 +
  2
let count = 0
var legacy = true
function helper(a: number): number {
  return a * 2
}
async function load() {
  return db.list('Order')
}
class Greeter {
  hello() { return 'hi' }
}
type Id = string
interface Shape {
  kind: string
}
if (total > 2) {
  count++
} else {
  count--
}
for (const x of [1, 2]) count += x
db.create('Order', { total })
$.Person({ name: 'Alice' })
console.log(`multi
# not a heading
line`)
count = count + 1
await send($.Order.created, { total })
;(async () => {
  await Promise.resolve()
})()
Closing prose.
"""
    module = parse(body)
    lines = code_lines(module)
    assert 4 not in lines and "Intro text." in module.prose and "Closing prose." in module.prose
    assert lines[5] == "const total = 1 +" and lines[6] == "  2"
    assert lines[30] == "console.log(`multi" and lines[31] == "# not a heading"
    assert max(lines) == 37
    assert sorted(lines) == list(range(5, 38))
    assert_line_aligned(module, f"---\n$id: /m/test\n---\n{body}")


def test_a_statement_continues_over_method_chains_and_else_branches() -> None:
    body = """const names = db.list('Person')
  .then((people) => people.map((p) => p.name))
  ?.filter(Boolean)
if (names)
  console.log(names)
try {
  run()
}
catch (e) {
  console.error(e)
}
finally {
  done()
}
Prose after.
"""
    module = parse(body)
    assert sorted(code_lines(module)) == list(range(4, 18))


def test_comments_next_to_code_are_code_and_lone_comments_are_prose() -> None:
    body = """// Register persistent event handlers
on($.Order.created, handler1)
// Handlers execute when triggered:
// - Order created -> handler1 fires

// a lone comment far from code

/**
 * Sends the report.
 */
every('0 9 * * *', report)
"""
    module = parse(body)
    lines = code_lines(module)
    assert sorted(lines) == [4, 5, 6, 7, 11, 12, 13, 14]
    assert "a lone comment far from code" in module.prose


def test_strings_regexes_and_comments_do_not_unbalance_a_chunk() -> None:
    body = """on($.A.b, async (x) => {
  const s = "a ) string with { braces"
  const t = 'it''s'
  const r = /[)}\\]]+/g
  /* a { comment */ const u = `${x.a + `${'}'}`} }`
  // a } comment
})
Prose.
"""
    module = parse(body)
    assert sorted(code_lines(module)) == list(range(4, 11))


def test_an_unclosed_handler_is_a_clear_error_at_registration() -> None:
    with pytest.raises(InvalidModule) as caught:
        parse("Intro.\non($.Order.created, async (order) => {\n  await send($.X.y, order)\n\nMore prose.\n")
    assert caught.value.message == "Code starting at line 5: '{' opened at line 5:38 is never closed"
    assert caught.value.line == 5


def test_a_closing_bracket_that_does_not_match_is_a_clear_error() -> None:
    with pytest.raises(InvalidModule, match=r"line 4: '\)' does not close '\{' opened at line 6 \(line 6:4\)"):
        parse("on($.A.b, () => {\n  foo(\n  {)\n})\n")


def test_a_syntax_error_inside_a_handler_stays_code_for_the_runtime_to_report() -> None:
    module = parse("on($.A.b, () => {\n  const x = foo bar\n})\n")
    assert sorted(code_lines(module)) == [4, 5, 6]


# -- imports and exports ---------------------------------------------------------------------------------


def test_imports_of_every_shape_are_listed_with_their_lines() -> None:
    body = """import { a, b as c } from '/modules/shared'
import def, { type T, d } from "https://x.do/m"
import * as ns from './ns'
import type { Only } from './types'
import './side-effect'
import {
  multi,
  line,
} from './multi'
export { a as again } from './re'
export * from './all'
export * as bundle from './bundle'
"""
    module = parse(body)
    assert [(i.specifier, i.names, i.line, i.type_only, i.reexport) for i in module.imports] == [
        ("/modules/shared", ("a", "b"), 4, False, False),
        ("https://x.do/m", ("default", "d"), 5, False, False),
        ("./ns", ("*",), 6, False, False),
        ("./types", ("Only",), 7, True, False),
        ("./side-effect", (), 8, False, False),
        ("./multi", ("multi", "line"), 9, False, False),
        ("./re", ("a",), 13, False, True),
        ("./all", ("*",), 14, False, True),
        ("./bundle", ("*",), 15, False, True),
    ]
    assert module.imports[0].bindings == (ImportBinding("a", "a"), ImportBinding("b", "c"))
    assert module.exports == ("again", "bundle")
    assert sorted(code_lines(module)) == list(range(4, 16))


def test_exports_of_every_shape_are_named() -> None:
    body = """export const config = {
  timeout: 30000,
  retries: 3,
}
export async function notify(order) {
  await send($.Email.send, order)
}
export function* gen() {}
export class Service {}
export let a = 1, b = 2
export const { x, y: z, ...rest } = source
export const [first, second = 2] = list
export type Hidden = string
export interface AlsoHidden { a: string }
export enum Color { Red }
export { a as renamed, b }
export default notify
"""
    module = parse(body)
    assert module.exports == (
        "config",
        "notify",
        "gen",
        "Service",
        "a",
        "b",
        "x",
        "z",
        "rest",
        "first",
        "second",
        "Color",
        "renamed",
        "default",
    )


# -- JSX -------------------------------------------------------------------------------------------------


def test_jsx_elements_are_components_and_never_code() -> None:
    body = """<OrderStatus showProgress={true} />
<Chart
  title="Sales"
  data={db.list('Order').then((o) => o.length)}
  compact
  {...rest}
/>
<Card title='Hi'>
  Some *markdown* with {expression} and <Badge label="x" />
  <Card title="nested">inner</Card>
</Card>
<br>
<>fragment</>
"""
    module = parse(body)
    assert module.code.strip() == ""
    assert [(c.name, c.props, c.line, c.end_line) for c in module.components] == [
        ("OrderStatus", {"showProgress": "true"}, 4, 4),
        (
            "Chart",
            {"title": "Sales", "data": "db.list('Order').then((o) => o.length)", "compact": "true", "...": "rest"},
            5,
            10,
        ),
        ("Card", {"title": "Hi"}, 11, 14),
        ("br", {}, 15, 15),
        ("", {}, 16, 16),
    ]
    assert "<Badge" in module.components[2].children
    assert "<Chart" in module.prose


def test_an_unclosed_jsx_element_is_left_as_prose() -> None:
    module = parse("<T> is a type parameter.\non($.A.b, f)\n")
    assert module.components == ()
    assert code_lines(module) == {5: "on($.A.b, f)"}


# -- fenced blocks ---------------------------------------------------------------------------------------


def test_only_tagged_script_fences_are_executable() -> None:
    body = """```ts run
on($.A.b, handler)
```
```typescript export
export const x = 1
```
```js {exec}
every('5m', tick)
```
```ts
on($.Doc.only, handler)
```
```
on($.Untagged.fence, handler)
```
```python run
print('no')
```
~~~~javascript run
const y = '```'
~~~~
"""
    module = parse(body)
    assert code_lines(module) == {
        5: "on($.A.b, handler)",
        8: "export const x = 1",
        11: "every('5m', tick)",
        23: "const y = '```'",
    }
    assert module.exports == ("x",)
    assert [(b.lang, b.executable, b.line) for b in module.blocks] == [
        ("ts", True, 4),
        ("typescript", True, 7),
        ("js", True, 10),
        ("ts", False, 13),
        ("", False, 16),
        ("python", False, 19),
        ("javascript", True, 22),
    ]
    assert "on($.Doc.only, handler)" in module.prose
    assert "```ts run" in module.prose


def test_an_unterminated_executable_fence_is_an_error_and_a_documentation_one_runs_to_the_end() -> None:
    with pytest.raises(InvalidModule, match="Unterminated code block: the fence on line 4 is never closed"):
        parse("```ts run\non($.A.b, f)\n")
    module = parse("```\non($.A.b, f)\n")
    assert module.code.strip() == ""


def test_code_lines_keep_their_module_line_numbers() -> None:
    text = "---\n$id: /a\n---\n# T\n\nsend($.A.b, {})\n<X />\nevery('5m', () => {\n  tick()\n})\n"
    module = parse_module(text, CONTEXT)
    assert module.code.split("\n")[5] == "send($.A.b, {})"
    assert module.code.split("\n")[8] == "  tick()"
    assert module.code_lines == (6, 8, 9, 10)
    assert_line_aligned(module, text)
