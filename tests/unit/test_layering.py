"""The core never imports an adapter or a backend's client library: only `adapters/` and the one wiring
place (`bootstrap.py`) do. Checked on the source, so a new import anywhere fails here."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "shared" / "mcpdo"
ALLOWED = {PACKAGE / "bootstrap.py"}
BACKENDS = ("mcpdo.adapters", "sqlite3", "boto3", "botocore", "httpx", "mypy_boto3")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
    return names


def test_only_adapters_and_the_wiring_import_adapters_and_backend_clients() -> None:
    offenders = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in PACKAGE.rglob("*.py")
        if path not in ALLOWED and (PACKAGE / "adapters") not in path.parents
        for name in _imports(path)
        if any(name == backend or name.startswith(backend + ".") for backend in BACKENDS)
    }
    assert not offenders, sorted(offenders)
