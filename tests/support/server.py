"""A real `mcpdo serve` process on a free loopback port."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent


@dataclass
class RunningServer:
    url: str
    admin_key: str
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[str]
    banner: str | None = None
    # Every line the server wrote after its banner (its operator log among them), drained as it comes so a
    # full pipe never stalls the server.
    output: list[str] = field(default_factory=list)
    drainer: threading.Thread | None = None

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines of the operator log so far (the server's stderr is no terminal: JSON)."""
        lines = []
        for line in list(self.output):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                lines.append(parsed)
        return lines

    def mcpdo(self, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the CLI against the same state folder."""
        env = dict(self.env)
        if key:
            env["MCPDO_API_KEY"] = key
        return subprocess.run(
            [str(BIN / "mcpdo"), *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    def new_key(self, name: str, *extra: str) -> str:
        done = self.mcpdo("keys", "create", "--name", name, *extra)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path, **extra_env: str) -> RunningServer:
    port = free_port()
    # Quotas off unless a test sets them: the suites make far more calls than a minute's default quota.
    env = {
        **os.environ,
        "MCPDO_DATA_DIR": str(data_dir),
        "MCPDO_PORT": str(port),
        "MCPDO_RATE_LIMIT_ANONYMOUS": "0",
        "MCPDO_RATE_LIMIT_AUTHENTICATED": "0",
        **extra_env,
    }
    env.pop("MCPDO_API_KEY", None)
    process = subprocess.Popen(
        [str(BIN / "mcpdo"), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    banner: list[str] = []
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError("mcpdo serve exited early:\n" + "".join(banner))
        banner.append(line)
        if "More keys:" in line or "Authenticate with" in line:
            break
    text = "".join(banner)
    # Not a terminal: the first admin key is in an owner-only file the banner names, never in the output.
    written = re.search(r"^\s+(/\S+first-admin-key)$", text, re.MULTILINE)
    admin_key = Path(written.group(1)).read_text().strip() if written else ""
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    running = RunningServer(
        url=url + "/mcp", admin_key=admin_key, data_dir=data_dir, env=env, process=process, banner=text
    )
    running.drainer = threading.Thread(target=_drain, args=(process, running.output), daemon=True)
    running.drainer.start()
    return running


def _drain(process: subprocess.Popen[str], into: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        into.append(line)


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)
    if server.drainer is not None:
        server.drainer.join(timeout=10)  # the last lines are in `output` once the pipe is at its end
