"""Settings from the environment: every bad value is an error naming the variable and what it must be."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcpdo.bootstrap import build
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
        ("MCPDO_BACKEND", "gcp", "It must be one of: local, aws."),
    ],
)
def test_a_bad_setting_is_an_error_naming_the_variable(tmp_path: Path, name: str, raw: str, complaint: str) -> None:
    with pytest.raises(InputError) as refused:
        Settings.from_env({"MCPDO_DATA_DIR": str(tmp_path), "MCPDO_SANDBOX_POOL_SIZE": "2", name: raw})
    assert refused.value.message == f"Setting '{name}' has value '{raw}'. {complaint}"


def test_on_aws_the_script_budget_stays_under_api_gateways_30_second_cut_and_the_table_is_required() -> None:
    env = {"MCPDO_BACKEND": "aws", "MCPDO_TABLE": "state", "MCPDO_ALLOWED_HOSTS": "a.example, b.example"}
    settings = Settings.from_env({**env, "MCPDO_TIMEOUT_MS": "60000"})
    assert (settings.backend, settings.table, settings.allowed_hosts) == ("aws", "state", ("a.example", "b.example"))
    assert settings.limits(anonymous=False).timeout_ms == 25_000
    assert Settings.from_env(env).limits(anonymous=False).timeout_ms == 25_000
    with pytest.raises(InputError) as refused:
        Settings.from_env({**env, "MCPDO_ANONYMOUS_TIMEOUT_MS": "26000"})
    assert (
        refused.value.message
        == "Setting 'MCPDO_ANONYMOUS_TIMEOUT_MS' has value '26000'. It must be between 1 and 25000."
    )
    with pytest.raises(InputError, match="'MCPDO_TABLE' is required with MCPDO_BACKEND=aws"):
        Settings.from_env({"MCPDO_BACKEND": "aws"})


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"MCPDO_EVENT_BUS": "bus"}, "MCPDO_DELIVERY_QUEUE_URL, MCPDO_DEAD_LETTER_QUEUE_URL"),
        ({"MCPDO_SCHEDULE_GROUP": "g", "MCPDO_SCHEDULER_ROLE_ARN": "r"}, "MCPDO_SCHEDULE_TARGET_ARN"),
    ],
)
def test_a_half_configured_aws_part_is_refused_naming_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, str], missing: str
) -> None:
    # It would accept work (a send, a schedule) that nothing could finish; no AWS call is made before this.
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    settings = Settings.from_env({"MCPDO_BACKEND": "aws", "MCPDO_TABLE": "state", **given})
    with pytest.raises(InputError, match=missing):
        build(settings)
