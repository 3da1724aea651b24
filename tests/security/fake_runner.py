"""A compromised sandbox runner, for tests: it answers each `exec` with the lines its `code` lists.

`code` is a JSON list of lines. Each is written as it stands after `{exec}` and `{nonce}` are replaced by
the execution's own id and nonce (JSON-escaped); a line given as a list of byte values is written raw.
"""

import json
import sys


def main() -> None:
    out = sys.stdout.buffer
    out.write(b'{"type":"ready"}\n')
    out.flush()
    for raw in sys.stdin.buffer:
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(msg, dict) or msg.get("type") != "exec":
            continue
        for line in json.loads(msg["code"]):
            if isinstance(line, list):
                out.write(bytes(line))
            else:
                text = line.replace("{exec}", json.dumps(msg["id"])).replace("{nonce}", json.dumps(msg["nonce"]))
                out.write(text.encode() + b"\n")
        out.flush()


main()
