"""One typed Settings object, built from an injectable mapping (the environment by default)."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mcpdo.errors import InputError
from mcpdo.events.routing import HOP_LIMIT, MAX_DELIVERIES_PER_SEND
from mcpdo.identity import ANONYMOUS_TENANT, DEFAULT_TENANT, Roles
from mcpdo.operations import FORMATS, LEVELS
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
    # The URL clients reach the server at, when it is not http://host:port (a proxy in front) or, on AWS,
    # https://<first allowed host>: the OAuth audience and the RFC 9728 `resource` are `<public_url>/mcp`.
    public_url: str | None = None
    # The operator's log lines (mcpdo.operations): None means the command's own default (servers info,
    # other commands warning) and, for the format, text on a terminal and JSON lines otherwise.
    log_level: str | None = None
    log_format: str | None = None
    aws: AwsResources = field(default_factory=lambda: AwsResources())
    ai: AiSettings = field(default_factory=lambda: AiSettings())
    web: WebSettings = field(default_factory=lambda: WebSettings())
    auth: AuthSettings = field(default_factory=lambda: AuthSettings())

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
        default_tenant = env.get("MCPDO_DEFAULT_TENANT", DEFAULT_TENANT)
        settings = cls(
            data_dir=Path(env.get("MCPDO_DATA_DIR") or ".mcpdo").expanduser().resolve(),
            host=env.get("MCPDO_HOST", "127.0.0.1"),
            port=reader.int("MCPDO_PORT", 8787, low=0, high=65535),
            default_tenant=default_tenant,
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
            public_url=(env.get("MCPDO_PUBLIC_URL") or "").rstrip("/") or None,
            log_level=reader.optional_choice("MCPDO_LOG_LEVEL", LEVELS),
            log_format=reader.optional_choice("MCPDO_LOG_FORMAT", FORMATS),
            aws=AwsResources.from_env(env),
            ai=AiSettings.from_env(env, reader, backend),
            web=WebSettings.from_env(env, reader),
            auth=AuthSettings.from_env(env, reader, default_tenant),
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
    def resource_url(self) -> str:
        """The MCP endpoint's URL as clients use it: what OAuth tokens are for (their audience)."""
        if self.public_url is not None:
            return f"{self.public_url}/mcp"
        if self.backend == "aws" and self.allowed_hosts:
            return f"https://{self.allowed_hosts[0]}/mcp"
        return f"http://{self.host}:{self.port}/mcp"

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


AI_PROVIDERS = ("openai", "bedrock")
# Every setting of the model provider, named by the error an `ai` call gives when none is configured.
AI_SETTINGS = (
    "MCPDO_AI_PROVIDER",
    "MCPDO_AI_BASE_URL",
    "MCPDO_AI_API_KEY",
    "MCPDO_AI_MODEL",
    "MCPDO_AI_MODELS",
    "MCPDO_AI_EMBED_MODEL",
)
# Bedrock's defaults, so that an AWS deployment needs no model setting (the ids Bedrock lists for Converse).
BEDROCK_DEFAULT_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
BEDROCK_DEFAULT_EMBED_MODEL = "amazon.titan-embed-text-v2:0"


@dataclass(frozen=True)
class AiSettings:
    """The model provider (README, "ai"). `provider` None: not configured, every `ai` call says so."""

    provider: str | None = None
    base_url: str | None = None
    # Never printed: repr=False keeps it out of any log of the settings.
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    models: Mapping[str, str] = field(default_factory=dict)
    embed_model: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 3
    batch_concurrency: int = 4

    @classmethod
    def from_env(cls, env: Mapping[str, str], reader: _Reader, backend: str) -> AiSettings:
        default = "bedrock" if backend == "aws" else None
        provider = env.get("MCPDO_AI_PROVIDER") or default
        if provider is not None:
            provider = reader.choice("MCPDO_AI_PROVIDER", provider, AI_PROVIDERS)
        base_url = env.get("MCPDO_AI_BASE_URL") or None
        if provider == "openai" and base_url is None:
            raise InputError(
                "Setting 'MCPDO_AI_BASE_URL' is required with MCPDO_AI_PROVIDER=openai: the server's "
                "OpenAI-compatible base URL, such as https://api.openai.com/v1"
            )
        bedrock = provider == "bedrock"
        return cls(
            provider=provider,
            base_url=base_url,
            api_key=env.get("MCPDO_AI_API_KEY") or None,
            model=env.get("MCPDO_AI_MODEL") or (BEDROCK_DEFAULT_MODEL if bedrock else None),
            models=_pairs("MCPDO_AI_MODELS", env.get("MCPDO_AI_MODELS", ""), "model names to provider model ids"),
            embed_model=env.get("MCPDO_AI_EMBED_MODEL") or (BEDROCK_DEFAULT_EMBED_MODEL if bedrock else None),
            timeout_s=reader.int("MCPDO_AI_TIMEOUT_MS", 60_000, low=100, high=600_000) / 1000,
            max_retries=reader.int("MCPDO_AI_MAX_RETRIES", 3, low=0, high=10),
            batch_concurrency=reader.int("MCPDO_AI_BATCH_CONCURRENCY", 4, high=64),
        )


def _pairs(name: str, text: str, what: str) -> dict[str, str]:
    """A map setting: `key=value` pairs separated by commas, or a JSON object of strings."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise InputError(f"Setting '{name}' is not valid JSON") from None
        if not isinstance(parsed, dict) or not all(isinstance(v, str) and v for v in parsed.values()):
            raise InputError(f"Setting '{name}' must map {what} (strings)")
        return {str(k): v for k, v in parsed.items()}
    pairs: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        key, sep, value = item.partition("=")
        if not item:
            continue
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"Setting '{name}' has item {item!r}: write key=value pairs, comma-separated ({what})")
        pairs[key.strip()] = value.strip()
    return pairs


# Which role an OAuth scope gives (MCPDO_OAUTH_ROLE_SCOPES replaces it); a token with none of them reads.
DEFAULT_ROLE_SCOPES = {"mcp:admin": "admin", "mcp:write": "member", "mcp:read": "reader"}


@dataclass(frozen=True)
class AuthSettings:
    """Who may call (README, "Identity"): anonymous callers, OAuth bearer tokens, roles, proxies, audit."""

    anonymous: bool = True
    anonymous_tenant: str = ANONYMOUS_TENANT
    oauth_issuer: str | None = None
    oauth_audience: str | None = None
    oauth_discovery_url: str | None = None
    oauth_tenant_claim: str = "tenant"
    oauth_role_scopes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLE_SCOPES))
    roles: Roles = field(default_factory=Roles)
    # Addresses or networks whose X-Forwarded-For is believed; nobody's by default.
    trusted_proxies: tuple[str, ...] = ()
    audit_retention_days: int = 90
    # How long a key once read may be used without reading it again (0: read on every request). A revocation
    # made elsewhere (`mcpdo keys revoke` against the table) takes up to this long to reach a warm process.
    key_cache_s: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str], reader: _Reader, default_tenant: str) -> AuthSettings:
        anonymous_tenant = env.get("MCPDO_ANONYMOUS_TENANT") or ANONYMOUS_TENANT
        if anonymous_tenant == default_tenant:
            raise InputError(
                f"Setting 'MCPDO_ANONYMOUS_TENANT' is '{anonymous_tenant}', the tenant of the deployment's keys: "
                "anonymous callers would read it. Name a tenant of their own (default 'public')."
            )
        roles = Roles.with_custom(_custom_roles(env.get("MCPDO_ROLES", "")))
        role_scopes = _pairs("MCPDO_OAUTH_ROLE_SCOPES", env.get("MCPDO_OAUTH_ROLE_SCOPES", ""), "scopes to roles")
        unknown = sorted(set(role_scopes.values()) - set(roles.names))
        if unknown:
            raise InputError(
                f"Setting 'MCPDO_OAUTH_ROLE_SCOPES' names unknown role(s) {', '.join(unknown)}; "
                f"roles: {', '.join(roles.names)}"
            )
        return cls(
            anonymous=reader.choice("MCPDO_ANONYMOUS", "on", ("on", "off")) == "on",
            anonymous_tenant=anonymous_tenant,
            oauth_issuer=env.get("MCPDO_OAUTH_ISSUER") or None,
            oauth_audience=env.get("MCPDO_OAUTH_AUDIENCE") or None,
            oauth_discovery_url=env.get("MCPDO_OAUTH_DISCOVERY_URL") or None,
            oauth_tenant_claim=env.get("MCPDO_OAUTH_TENANT_CLAIM") or "tenant",
            oauth_role_scopes=role_scopes or dict(DEFAULT_ROLE_SCOPES),
            roles=roles,
            trusted_proxies=_trusted_proxies(env.get("MCPDO_TRUSTED_PROXIES", "")),
            audit_retention_days=reader.int("MCPDO_AUDIT_RETENTION_DAYS", 90, high=3650),
            key_cache_s=reader.int("MCPDO_KEY_CACHE_SECONDS", 0, low=0, high=300),
        )


def _custom_roles(text: str) -> dict[str, list[str]]:
    """`MCPDO_ROLES`: a JSON object of role name to grants, `{"support": ["read:*", "update:Ticket"]}`."""
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        raise InputError(
            'Setting \'MCPDO_ROLES\' is not valid JSON: write {"role": ["action:resource", ...]}'
        ) from None
    if not isinstance(parsed, dict):
        raise InputError("Setting 'MCPDO_ROLES' must be a JSON object of role name to a list of grants")
    return parsed


def _trusted_proxies(text: str) -> tuple[str, ...]:
    """`MCPDO_TRUSTED_PROXIES`: addresses or CIDR networks, comma-separated; each must parse."""
    proxies = tuple(item.strip() for item in text.split(",") if item.strip())
    for item in proxies:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise InputError(f"Setting 'MCPDO_TRUSTED_PROXIES' has {item!r}: not an IP address or network") from None
    return proxies


@dataclass(frozen=True)
class WebSettings:
    """Outgoing HTTP (`api.fetch`, `api.proxy`) and the credentials `api.proxy` uses."""

    fetch_allow: str = ""
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    max_response_bytes: int = 5 * MiB
    # A file's path, or (where no file is deployed: Lambda) the YAML/JSON text itself when it starts with `{`.
    services_file: Path | str | None = None
    secrets_file: Path | None = None
    secrets_ttl_s: float = 300.0
    # On AWS, secret NAME is the Secrets Manager secret <prefix>NAME (the function may read only that prefix).
    secrets_prefix: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str], reader: _Reader) -> WebSettings:
        return cls(
            fetch_allow=env.get("MCPDO_FETCH_ALLOW", ""),
            connect_timeout_s=reader.int("MCPDO_FETCH_CONNECT_TIMEOUT_MS", 5_000, high=60_000) / 1000,
            read_timeout_s=reader.int("MCPDO_FETCH_TIMEOUT_MS", 10_000, high=120_000) / 1000,
            max_response_bytes=reader.int("MCPDO_FETCH_MAX_BYTES", 5 * MiB, high=64 * MiB),
            services_file=_services(env.get("MCPDO_SERVICES")),
            secrets_file=_path(env.get("MCPDO_SECRETS_FILE")),
            secrets_ttl_s=reader.int("MCPDO_SECRETS_TTL_S", 300, low=0, high=86_400),
            secrets_prefix=env.get("MCPDO_SECRETS_PREFIX", ""),
        )


def _services(value: str | None) -> Path | str | None:
    if not value:
        return None
    return value if value.lstrip().startswith("{") else Path(value).expanduser()


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


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

    def optional_choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        """One of `choices` (in any case), or None when unset."""
        raw = (self._env.get(name) or "").strip()
        if not raw:
            return None
        if raw.lower() not in choices:
            raise InputError(f"Setting '{name}' has value '{raw}'. It must be one of: {', '.join(choices)}.")
        return raw.lower()

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
