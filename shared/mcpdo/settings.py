"""One typed Settings object, built from an injectable mapping (the environment by default)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mcpdo.errors import InputError
from mcpdo.events.routing import HOP_LIMIT, MAX_DELIVERIES_PER_SEND
from mcpdo.identity import DEFAULT_TENANT
from mcpdo.sandbox.admission import DEFAULT_WAIT_MS, Caps
from mcpdo.sandbox.types import Limits

MiB = 1024 * 1024
TIMEOUT_CAP_MS = 60_000
# API Gateway HTTP APIs cut every request at 30 s: on AWS a script's budget stays below that, leaving room for
# the function's own start and the answer (SPEC: "lower where the front door caps lower").
AWS_TIMEOUT_CAP_MS = 25_000
BACKENDS = ("local", "aws")


@dataclass(frozen=True)
class Settings:
    """Everything a deployment can tune. Read once, in bootstrap; the core never reads the environment."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8787
    default_tenant: str = DEFAULT_TENANT
    default_context: str = "https://mcpdo.local"
    anonymous_timeout_ms: int = 10_000
    authenticated_timeout_ms: int = 30_000
    memory_bytes: int = 128 * MiB
    max_script_bytes: int = 100 * 1024
    max_result_bytes: int = 1 * MiB
    max_sdk_calls: int = 1_000
    sandbox_pool_size: int = 2
    # Fair sharing of the runners (README, Security): the pool grows to `sandbox_pool_max` on demand; a
    # request waits at most `sandbox_wait_ms`; caps per key, per anonymous address and for all anonymous.
    sandbox_pool_max: int = 4
    sandbox_wait_ms: int = DEFAULT_WAIT_MS
    concurrency_per_key: int = Caps.per_key
    concurrency_per_anonymous: int = Caps.per_anonymous
    anonymous_runners: int = 1
    node_path: str | None = None
    runner_path: str | None = None
    api_key: str | None = None
    retry_base_seconds: float = 1.0
    rate_limit_anonymous: int = 10
    rate_limit_authenticated: int = 100
    event_hop_limit: int = HOP_LIMIT
    max_deliveries_per_send: int = MAX_DELIVERIES_PER_SEND
    # Which deployment (`build_local` or `build_aws`); on AWS the state table and the hosts API Gateway
    # answers on (the Host/Origin allow-list of the function).
    backend: str = "local"
    table: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    aws: AwsResources = field(default_factory=lambda: AwsResources())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `MCPDO_*` variables; each bad value is an error naming the variable."""
        env = os.environ if env is None else env
        reader = _Reader(env)
        backend = reader.choice("MCPDO_BACKEND", "local", BACKENDS)
        cap = AWS_TIMEOUT_CAP_MS if backend == "aws" else TIMEOUT_CAP_MS
        authenticated = reader.int("MCPDO_TIMEOUT_MS", min(30_000, cap))
        pool_size = reader.int("MCPDO_SANDBOX_POOL_SIZE", max(2, os.cpu_count() or 2), high=64)
        pool_max = reader.int("MCPDO_SANDBOX_POOL_MAX", min(2 * pool_size, max(pool_size, 64)), low=pool_size, high=128)
        settings = cls(
            data_dir=Path(env.get("MCPDO_DATA_DIR") or ".mcpdo").expanduser().resolve(),
            host=env.get("MCPDO_HOST", "127.0.0.1"),
            port=reader.int("MCPDO_PORT", 8787, low=0, high=65535),
            default_tenant=env.get("MCPDO_DEFAULT_TENANT", DEFAULT_TENANT),
            default_context=env.get("MCPDO_CONTEXT", "https://mcpdo.local"),
            anonymous_timeout_ms=reader.int("MCPDO_ANONYMOUS_TIMEOUT_MS", 10_000, high=cap),
            authenticated_timeout_ms=min(authenticated, cap),
            memory_bytes=reader.int("MCPDO_MEMORY_MB", 128, low=16, high=2048) * MiB,
            max_script_bytes=reader.int("MCPDO_MAX_SCRIPT_BYTES", 100 * 1024),
            max_result_bytes=reader.int("MCPDO_MAX_RESULT_BYTES", MiB),
            max_sdk_calls=reader.int("MCPDO_MAX_SDK_CALLS", 1_000),
            sandbox_pool_size=pool_size,
            sandbox_pool_max=pool_max,
            sandbox_wait_ms=reader.int("MCPDO_SANDBOX_WAIT_MS", DEFAULT_WAIT_MS, low=0, high=120_000),
            concurrency_per_key=reader.int("MCPDO_CONCURRENCY_PER_KEY", Caps.per_key, high=1024),
            concurrency_per_anonymous=reader.int("MCPDO_CONCURRENCY_PER_ANONYMOUS", Caps.per_anonymous, high=1024),
            # Anonymous callers together never hold every runner: at least one is left for keys.
            anonymous_runners=reader.int("MCPDO_ANONYMOUS_RUNNERS", max(1, pool_size - 1), high=max(1, pool_max - 1)),
            node_path=env.get("MCPDO_NODE") or None,
            runner_path=env.get("MCPDO_RUNNER") or None,
            api_key=env.get("MCPDO_API_KEY") or None,
            rate_limit_anonymous=reader.int("MCPDO_RATE_LIMIT_ANONYMOUS", 10, low=0),
            rate_limit_authenticated=reader.int("MCPDO_RATE_LIMIT_AUTHENTICATED", 100, low=0),
            retry_base_seconds=reader.int("MCPDO_RETRY_BASE_MS", 1000, low=1, high=3_600_000) / 1000,
            event_hop_limit=reader.int("MCPDO_EVENT_HOP_LIMIT", HOP_LIMIT, low=0, high=100),
            max_deliveries_per_send=reader.int(
                "MCPDO_MAX_DELIVERIES_PER_SEND", MAX_DELIVERIES_PER_SEND, low=1, high=10_000
            ),
            backend=backend,
            table=env.get("MCPDO_TABLE") or None,
            allowed_hosts=tuple(host.strip() for host in env.get("MCPDO_ALLOWED_HOSTS", "").split(",") if host.strip()),
            aws=AwsResources.from_env(env),
        )
        if backend == "aws" and settings.table is None:
            raise InputError("Setting 'MCPDO_TABLE' is required with MCPDO_BACKEND=aws: the state table's name")
        return settings

    def limits(self, *, anonymous: bool) -> Limits:
        """The sandbox limits for one caller tier."""
        timeout = self.anonymous_timeout_ms if anonymous else self.authenticated_timeout_ms
        return Limits(
            timeout_ms=timeout,
            memory_bytes=self.memory_bytes,
            max_script_bytes=self.max_script_bytes,
            max_result_bytes=self.max_result_bytes,
            max_sdk_calls=self.max_sdk_calls,
        )

    @property
    def database_path(self) -> Path:
        return self.data_dir / "mcpdo.db"


@dataclass(frozen=True)
class AwsResources:
    """The stack's event resources, as template.yaml gives them to every function (MCPDO_BACKEND=aws). A part
    left unset is not deployed: using it fails with an error naming its setting."""

    event_bus: str | None = None
    delivery_queue_url: str | None = None
    dead_letter_queue_url: str | None = None
    schedule_group: str | None = None
    schedule_target_arn: str | None = None
    scheduler_role_arn: str | None = None
    schedule_dlq_arn: str | None = None
    mail_from: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AwsResources:
        return cls(**{name: env.get(variable) or None for name, variable in AWS_SETTINGS.items()})


# AwsResources field -> its environment variable (the names template.yaml sets).
AWS_SETTINGS = {
    "event_bus": "MCPDO_EVENT_BUS",
    "delivery_queue_url": "MCPDO_DELIVERY_QUEUE_URL",
    "dead_letter_queue_url": "MCPDO_DEAD_LETTER_QUEUE_URL",
    "schedule_group": "MCPDO_SCHEDULE_GROUP",
    "schedule_target_arn": "MCPDO_SCHEDULE_TARGET_ARN",
    "scheduler_role_arn": "MCPDO_SCHEDULER_ROLE_ARN",
    "schedule_dlq_arn": "MCPDO_SCHEDULE_DLQ_ARN",
    "mail_from": "MCPDO_MAIL_FROM",
}


# What a part of the AWS deployment that its settings leave out says when used (mcpdo.adapters.not_deployed).
EVENTS_NOT_DEPLOYED = (
    "send() needs the events deployment: settings MCPDO_EVENT_BUS, MCPDO_DELIVERY_QUEUE_URL and "
    "MCPDO_DEAD_LETTER_QUEUE_URL (template.yaml sets them on every function)"
)
SCHEDULES_NOT_DEPLOYED = (
    "every() needs the schedules deployment: settings MCPDO_SCHEDULE_GROUP, MCPDO_SCHEDULE_TARGET_ARN, "
    "MCPDO_SCHEDULER_ROLE_ARN and MCPDO_SCHEDULE_DLQ_ARN (template.yaml sets them on every function)"
)
MAIL_NOT_DEPLOYED = (
    "$.Email.send needs a sender: setting MCPDO_MAIL_FROM, an address SES has verified (the MailFrom parameter)"
)


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self._env.get(name) or default
        if raw not in choices:
            raise InputError(f"Setting '{name}' has value '{raw}'. It must be one of: {', '.join(choices)}.")
        return raw

    def int(self, name: str, default: int, low: int = 1, high: int | None = None) -> int:
        raw = self._env.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InputError(f"Setting '{name}' has value '{raw}'. Not a valid integer.") from None
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise InputError(f"Setting '{name}' has value '{raw}'. It must be {bounds}.")
        return value
