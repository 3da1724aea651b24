"""Settings from the environment: every bad value is an error naming the variable and what it must be."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcpdo.errors import InputError
from mcpdo.settings import Settings


@pytest.mark.parametrize(
    ("name", "raw", "complaint"),
    [
        ("MCPDO_SANDBOX_POOL_MAX", "1", "It must be between 2 and 128."),
        ("MCPDO_SANDBOX_WAIT_MS", "-1", "It must be between 0 and 120000."),
        ("MCPDO_CONCURRENCY_PER_KEY", "0", "It must be between 1 and 1024."),
        ("MCPDO_CONCURRENCY_PER_ANONYMOUS", "many", "Not a valid integer."),
        ("MCPDO_ANONYMOUS_RUNNERS", "4", "It must be between 1 and 3."),
        ("MCPDO_EVENT_HOP_LIMIT", "many", "Not a valid integer."),
        ("MCPDO_EVENT_HOP_LIMIT", "-1", "It must be between 0 and 100."),
        ("MCPDO_MAX_DELIVERIES_PER_SEND", "0", "It must be between 1 and 10000."),
    ],
)
def test_a_bad_setting_is_an_error_naming_the_variable(tmp_path: Path, name: str, raw: str, complaint: str) -> None:
    with pytest.raises(InputError) as refused:
        Settings.from_env({"MCPDO_DATA_DIR": str(tmp_path), "MCPDO_SANDBOX_POOL_SIZE": "2", name: raw})
    assert refused.value.message == f"Setting '{name}' has value '{raw}'. {complaint}"
