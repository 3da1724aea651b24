"""`mcpdo stdio` driven by the SDK's `Client`, and the `mcpdo run` / `mcpdo keys` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.support.client import text_of, value_of
from tests.support.server import RunningServer

BIN = Path(sys.executable).parent


def _stdio(data_dir: Path, key: str | None) -> StdioServerParameters:
    env = {"MCPDO_DATA_DIR": str(data_dir), "PATH": os.environ.get("PATH", "")}
    if key:
        env["MCPDO_API_KEY"] = key
    return StdioServerParameters(command=str(BIN / "mcpdo"), args=["stdio"], env=env)


@pytest.mark.anyio
async def test_stdio_with_a_key_writes_and_reads_the_same_state_as_http(server: RunningServer) -> None:
    async with Client(_stdio(server.data_dir, server.admin_key)) as client:
        tools = (await client.list_tools()).tools
        created = value_of(await client.call_tool("do", {"script": "await db.create('Note', { text: 'hi' })"}))
        listed = value_of(await client.call_tool("do", {"script": "await db.list('Note')"}))
    assert [tool.name for tool in tools] == ["do"]
    assert created["id"] in [note["id"] for note in listed]


@pytest.mark.anyio
async def test_stdio_without_a_key_is_anonymous_and_read_only(server: RunningServer) -> None:
    async with Client(_stdio(server.data_dir, None)) as client:
        result = await client.call_tool("do", {"script": "await db.create('Note', { text: 'no' })"})
    assert result.is_error
    assert text_of(result) == "Readonly violations detected:\n- db.create() at line 1"


def test_mcpdo_run_prints_the_result_of_a_typescript_file(server: RunningServer, tmp_path: Path) -> None:
    script = tmp_path / "report.ts"
    script.write_text(
        "const total: number = [1, 2, 3].reduce((a, b) => a + b, 0)\nconsole.log('summing')\n({ total })\n"
    )
    done = server.mcpdo("run", str(script), "--key", server.admin_key)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"total": 6}
    assert "summing" in done.stderr


def test_mcpdo_run_reports_a_script_error_and_exits_non_zero(server: RunningServer, tmp_path: Path) -> None:
    script = tmp_path / "broken.ts"
    script.write_text("throw new Error('boom')\n")
    done = server.mcpdo("run", str(script))
    assert done.returncode == 1
    announced, error = done.stderr.strip().split("\n", 1)
    assert announced == f"mcpdo: state folder {server.data_dir}"
    assert error == "Error: boom\n    at line 1:7"


def test_mcpdo_keys_create_prints_a_key_and_list_never_shows_secrets(server: RunningServer) -> None:
    key = server.new_key("ci-bot", "--role", "member", "--tenant", "ci")
    assert key.startswith("sk_") and len(key) > 40
    listing = server.mcpdo("keys", "list")
    assert listing.returncode == 0
    assert key not in listing.stdout
    row = next(k for k in json.loads(listing.stdout) if k["name"] == "ci-bot")
    assert row["tenant"] == "ci" and row["roles"] == ["member"]
    unknown = server.mcpdo("keys", "create", "--name", "x", "--role", "god")
    assert unknown.returncode == 1 and "valid roles: admin, member, reader" in unknown.stderr
    default = server.mcpdo("keys", "create", "--name", "least")
    assert "roles member" in default.stderr  # an admin key is asked for by name


def test_a_command_run_from_another_folder_refuses_to_start_a_new_state(server: RunningServer, tmp_path: Path) -> None:
    env = {**server.env, "MCPDO_DATA_DIR": str(tmp_path / "elsewhere")}
    done = subprocess.run(
        [str(BIN / "mcpdo"), "keys", "create", "--name", "lost"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1 and not done.stdout
    assert "No mcpdo state in" in done.stderr and "MCPDO_DATA_DIR" in done.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_the_first_run_banner_names_the_cli_and_the_state_and_keeps_the_key_out_of_the_output(
    server: RunningServer,
) -> None:
    key_file = server.data_dir / "first-admin-key"
    assert key_file.read_text().strip() == server.admin_key
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert server.banner is not None and server.admin_key not in server.banner
    assert f"state folder: {server.data_dir}" in server.banner
    assert f"{BIN / 'mcpdo'} keys create" in server.banner
    assert str(key_file) in server.banner


def test_mcpdo_stdio_with_an_invalid_key_exits_with_a_clear_error(tmp_path: Path) -> None:
    env = {"MCPDO_DATA_DIR": str(tmp_path), "MCPDO_API_KEY": "sk_wrong", "PATH": os.environ.get("PATH", "")}
    done = subprocess.run(
        [str(BIN / "mcpdo"), "stdio"], env=env, capture_output=True, text=True, timeout=60, input="", check=False
    )
    assert done.returncode == 1
    assert "Invalid or revoked API key" in done.stderr
