"""The one place that reads Settings and wires adapters into the core."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from mcpdo import __version__
from mcpdo.adapters.file_secrets import FileSecrets
from mcpdo.adapters.sqlite_audit import SqliteAuditLog
from mcpdo.adapters.sqlite_deliveries import SqliteDeliveryStore
from mcpdo.adapters.sqlite_keys import SqliteKeyStore
from mcpdo.adapters.sqlite_leases import SqliteLeases
from mcpdo.adapters.sqlite_modules import SqliteModuleStore
from mcpdo.adapters.sqlite_outbox import SqliteOutbox
from mcpdo.adapters.sqlite_runs import SqliteRunLog
from mcpdo.adapters.sqlite_schedules import SqliteSchedules
from mcpdo.adapters.sqlite_store import SqliteEntityStore
from mcpdo.adapters.sqlite_subscriptions import SqliteSubscriptions
from mcpdo.audit import Auditor, AuditReader
from mcpdo.auth import Authenticator
from mcpdo.errors import InputError
from mcpdo.events import Deliveries, Publisher, RetryPolicy
from mcpdo.execution import Executor, Outside
from mcpdo.modules import ModuleService, resolve_import
from mcpdo.netguard import Allowlist
from mcpdo.ports import (
    AfterAnswer,
    AuditLog,
    Closable,
    CronTable,
    DeliveryDispatch,
    DeliveryQueue,
    DeliveryStore,
    EntityStore,
    EventTransport,
    HttpRequest,
    HttpResponse,
    KeyStore,
    Leases,
    Mailer,
    ModelProvider,
    ModuleStore,
    QueueMessages,
    RunLog,
    ScheduleFires,
    ScheduleSync,
    SecretStore,
    SubscriptionSync,
    TokenVerifier,
    WebClient,
)
from mcpdo.sandbox.pool import Sandbox
from mcpdo.sdk.ai import show_usage_logs
from mcpdo.services import load_services
from mcpdo.settings import AwsResources, Settings
from mcpdo.tool import DoTool
from mcpdo.vocabulary import Vocabulary, default_schemas_dir
from mcpdo.worker import Worker

if TYPE_CHECKING:
    from mcpdo.adapters.dynamodb_table import DynamoTable
    from mcpdo.adapters.lambda_extension import LambdaAfterAnswer, RunOnLoop

# Every outgoing request says what sent it, so a site's operator can tell (and reach) who fetches.
USER_AGENT = f"mcpdo/{__version__} (api.fetch)"


@dataclass(frozen=True)
class LocalWork:
    """What the in-process worker polls where no queue or scheduler service pushes work (the embedded default)."""

    queue: DeliveryQueue
    cron: CronTable
    leases: Leases


@dataclass(frozen=True)
class Adapters:
    """The backends of one deployment: `build_local` chooses the embedded ones (a later `build_aws` the AWS
    ones); the core sees only their ports."""

    store: EntityStore
    keys: KeyStore
    modules: ModuleStore
    subscriptions: SubscriptionSync
    schedules: ScheduleSync
    deliveries: DeliveryStore
    runs: RunLog
    audit: AuditLog
    mailer: Mailer
    sandbox: Sandbox
    web: WebClient
    secrets: SecretStore
    models: ModelProvider | None = None
    transport: EventTransport | None = None
    dispatch: DeliveryDispatch | None = None
    queue_messages: QueueMessages | None = None
    schedule_fires: ScheduleFires | None = None
    local: LocalWork | None = None
    tokens: TokenVerifier | None = None
    # Lambda's: the audit entry is written once the caller has its answer (mcpdo.adapters.lambda_extension).
    after_answer: AfterAnswer | None = None

    def closables(self) -> tuple[Closable, ...]:
        """Every backend that holds a connection, in the order they are released."""
        local: tuple[Closable, ...] = () if self.local is None else (self.local.leases,)
        dispatch: tuple[Closable, ...] = () if self.dispatch is None else (self.dispatch,)
        models: tuple[Closable, ...] = () if self.models is None else (self.models,)
        tokens: tuple[Closable, ...] = () if self.tokens is None else (self.tokens,)
        return (
            *tokens,
            *models,
            self.web,
            self.secrets,
            *dispatch,
            self.deliveries,
            self.runs,
            self.audit,
            self.schedules,
            self.subscriptions,
            self.mailer,
            *local,
            self.modules,
            self.store,
            self.keys,
        )


@dataclass
class App:
    """Everything one process serves with, built once."""

    settings: Settings
    adapters: Adapters
    auth: Authenticator
    executor: Executor
    module_service: ModuleService
    publisher: Publisher
    deliveries: Deliveries
    tool: DoTool
    worker: Worker | None = None

    async def start(self, *, worker: bool = True) -> None:
        """Warm the sandbox; long-lived local processes also run the worker (deliveries and schedules)."""
        await self.adapters.sandbox.start()
        if worker and self.worker is not None:
            await self.worker.start()

    async def close(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        await self.adapters.sandbox.close()
        for closable in self.adapters.closables():
            await closable.close()


def build_app(settings: Settings, adapters: Adapters) -> App:
    """The one place that connects the core: tool, executor, module service, event services, worker."""
    publisher = Publisher(
        adapters.subscriptions,
        adapters.deliveries,
        transport=adapters.transport,
        dispatch=adapters.dispatch,
        hop_limit=settings.event_hop_limit,
        max_deliveries_per_send=settings.max_deliveries_per_send,
    )
    resolver = partial(resolve_import, adapters.modules, settings.default_context)
    outside = Outside(
        models=adapters.models,
        web=adapters.web,
        services=load_services(settings.web.services_file),
        secrets=adapters.secrets,
        vocabulary=Vocabulary.at(default_schemas_dir(settings.runner_path)),
    )
    auditor = Auditor(
        adapters.audit, timedelta(days=settings.auth.audit_retention_days), after_answer=adapters.after_answer
    )
    executor = Executor(
        settings,
        adapters.sandbox,
        adapters.store,
        publisher.publish,
        resolver,
        outside,
        auditor=auditor,
        audit_reader=AuditReader(adapters.audit),
    )
    auth = Authenticator(adapters.keys, settings.default_tenant, settings.auth, tokens=adapters.tokens)
    service = ModuleService(
        adapters.modules,
        adapters.subscriptions,
        adapters.schedules,
        executor,
        settings.default_context,
        auth.current,
    )
    deliveries = Deliveries(
        adapters.deliveries,
        publisher,
        service.invoke,
        adapters.runs,
        subscriptions=adapters.subscriptions,
        schedules=adapters.schedules,
        mailer=adapters.mailer,
        policy=RetryPolicy(backoff_base=settings.retry_base_seconds),
    )
    worker = None
    if adapters.local is not None:
        worker = Worker(adapters.local.queue, adapters.local.cron, adapters.local.leases, deliveries)
        publisher.listen(worker.notify)
    return App(
        settings=settings,
        adapters=adapters,
        auth=auth,
        executor=executor,
        module_service=service,
        publisher=publisher,
        deliveries=deliveries,
        tool=DoTool(executor.run_script, service.register),
        worker=worker,
    )


def build(settings: Settings, *, sandbox: Sandbox | None = None, after_answer: AfterAnswer | None = None) -> App:
    """The deployment `settings.backend` names (MCPDO_BACKEND); `sandbox`, when the caller made it already
    (the CLI starts its runners before importing this module, so that Node boots while Python imports);
    `after_answer`, what a Lambda function has for work after its answer (AWS only)."""
    if settings.backend == "aws":
        return build_aws(settings, sandbox=sandbox, after_answer=after_answer)
    return build_local(settings, sandbox=sandbox)


def build_local(settings: Settings, *, sandbox: Sandbox | None = None) -> App:
    """The embedded default: SQLite for everything durable, a pool of warm Node runners, an in-process worker."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.database_path
    deliveries = SqliteDeliveryStore(path)
    schedules = SqliteSchedules(path)
    adapters = Adapters(
        store=SqliteEntityStore(path),
        keys=SqliteKeyStore(path),
        modules=SqliteModuleStore(path),
        subscriptions=SqliteSubscriptions(path),
        schedules=schedules,
        deliveries=deliveries,
        runs=SqliteRunLog(path),
        audit=SqliteAuditLog(path),
        mailer=SqliteOutbox(path),
        sandbox=sandbox or Sandbox.configured(settings),
        web=_web(settings),
        secrets=FileSecrets(settings.web.secrets_file, os.environ),
        models=_models(settings),
        local=LocalWork(queue=deliveries, cron=schedules, leases=SqliteLeases(path)),
        tokens=_tokens(settings),
    )
    return build_app(settings, adapters)


def build_aws(settings: Settings, *, sandbox: Sandbox | None = None, after_answer: AfterAnswer | None = None) -> App:
    """AWS: DynamoDB for entities, keys, modules, subscriptions, deliveries and runs (one table, MCPDO_TABLE);
    EventBridge carries `send`, SQS the deliveries, Scheduler the `every` schedules, SES the mail. A part whose
    settings are unset is not deployed: its ports refuse by name (see `mcpdo.adapters.not_deployed`)."""
    # Imported here: the local deployment never pays for boto3.
    import boto3

    from mcpdo.adapters.dynamodb_audit import DynamoAuditLog
    from mcpdo.adapters.dynamodb_deliveries import DynamoDeliveryStore
    from mcpdo.adapters.dynamodb_keys import DynamoKeyStore
    from mcpdo.adapters.dynamodb_modules import DynamoModuleStore
    from mcpdo.adapters.dynamodb_runs import DynamoRunLog
    from mcpdo.adapters.dynamodb_store import DynamoEntityStore
    from mcpdo.adapters.dynamodb_subscriptions import DynamoSubscriptions
    from mcpdo.adapters.dynamodb_table import DynamoTable
    from mcpdo.adapters.secretsmanager_secrets import SecretsManagerSecrets

    if settings.table is None:
        raise InputError("Setting 'MCPDO_TABLE' is required with MCPDO_BACKEND=aws: the state table's name")
    # The token count of each execution goes to CloudWatch with the function's other logs.
    show_usage_logs()
    # AWS_ENDPOINT_URL (moto in tests) and the region come from the environment, as boto3 reads them.
    table = DynamoTable(boto3.client("dynamodb"), settings.table, what="state table")
    events = _aws_events(settings.aws, boto3.client)
    schedules = _aws_schedules(settings.aws, table, boto3.client)
    adapters = Adapters(
        store=DynamoEntityStore(table),
        keys=DynamoKeyStore(table),
        modules=DynamoModuleStore(table),
        subscriptions=DynamoSubscriptions(table),
        schedules=schedules,
        deliveries=DynamoDeliveryStore(table),
        runs=DynamoRunLog(table),
        audit=DynamoAuditLog(table, retention_seconds=settings.auth.audit_retention_days * 86_400),
        mailer=_aws_mailer(settings.aws, table, boto3.client),
        sandbox=sandbox or Sandbox.configured(settings),
        web=_web(settings),
        secrets=SecretsManagerSecrets(
            boto3.client("secretsmanager"), ttl_s=settings.web.secrets_ttl_s, prefix=settings.web.secrets_prefix
        ),
        models=_models(settings),
        transport=events.transport,
        dispatch=events.dispatch,
        queue_messages=events.messages,
        schedule_fires=_schedule_fires(schedules),
        tokens=_tokens(settings),
        after_answer=after_answer,
    )
    return build_app(settings, adapters)


def lambda_after_answer(env: Mapping[str, str], run: RunOnLoop) -> LambdaAfterAnswer | None:
    """On Lambda (INIT only): the internal extension that writes each invocation's audit entries after its
    answer, registered with the Runtime API `env` names; None where there is none (see the adapter)."""
    from mcpdo.adapters.lambda_extension import LambdaAfterAnswer

    return LambdaAfterAnswer.register(env, run)


def _tokens(settings: Settings) -> TokenVerifier | None:
    """OAuth bearer tokens of MCPDO_OAUTH_ISSUER, for this server's resource URL unless an audience is set."""
    auth = settings.auth
    if auth.oauth_issuer is None:
        return None
    from mcpdo.adapters.oauth_tokens import JwksTokenVerifier, OAuthConfig

    config = OAuthConfig(
        issuer=auth.oauth_issuer,
        audience=auth.oauth_audience or settings.resource_url,
        discovery_url=auth.oauth_discovery_url,
    )
    return JwksTokenVerifier(config)


def authorization_servers(settings: Settings) -> tuple[str, ...]:
    """What the RFC 9728 document lists: the OAuth issuer, when there is one."""
    return () if settings.auth.oauth_issuer is None else (settings.auth.oauth_issuer,)


@dataclass(frozen=True)
class _AwsEvents:
    transport: EventTransport
    dispatch: DeliveryDispatch
    messages: QueueMessages | None


def _aws_events(aws: AwsResources, client: Callable[..., Any]) -> _AwsEvents:
    """The bus `send` publishes to and the queues deliveries travel on: all three settings, or none."""
    from mcpdo.adapters.not_deployed import DispatchNotDeployed, TransportNotDeployed

    parts = {
        "MCPDO_EVENT_BUS": aws.event_bus,
        "MCPDO_DELIVERY_QUEUE_URL": aws.delivery_queue_url,
        "MCPDO_DEAD_LETTER_QUEUE_URL": aws.dead_letter_queue_url,
    }
    _all_or_none("the events deployment", parts)
    if aws.event_bus is None or aws.delivery_queue_url is None or aws.dead_letter_queue_url is None:
        return _AwsEvents(TransportNotDeployed(), DispatchNotDeployed(), None)
    from mcpdo.adapters.eventbridge_transport import EventBridgeTransport
    from mcpdo.adapters.sqs_dispatch import SqsDispatch
    from mcpdo.adapters.sqs_messages import SqsMessages

    sqs = client("sqs")
    return _AwsEvents(
        transport=EventBridgeTransport(client("events"), bus_name=aws.event_bus),
        dispatch=SqsDispatch(sqs, queue_url=aws.delivery_queue_url),
        messages=SqsMessages(sqs, queue_url=aws.delivery_queue_url, dead_letter_queue_url=aws.dead_letter_queue_url),
    )


def _aws_schedules(aws: AwsResources, table: DynamoTable, client: Callable[..., Any]) -> ScheduleSync:
    """One Scheduler schedule per `every()` in the stack's group: all four settings, or none."""
    from mcpdo.adapters.not_deployed import SchedulesNotDeployed

    parts = {
        "MCPDO_SCHEDULE_GROUP": aws.schedule_group,
        "MCPDO_SCHEDULE_TARGET_ARN": aws.schedule_target_arn,
        "MCPDO_SCHEDULER_ROLE_ARN": aws.scheduler_role_arn,
        "MCPDO_SCHEDULE_DLQ_ARN": aws.schedule_dlq_arn,
    }
    _all_or_none("the schedules deployment", parts)
    group, target, role, dead_letters = (
        aws.schedule_group,
        aws.schedule_target_arn,
        aws.scheduler_role_arn,
        aws.schedule_dlq_arn,
    )
    if group is None or target is None or role is None or dead_letters is None:
        return SchedulesNotDeployed()
    from mcpdo.adapters.scheduler_schedules import SchedulerSchedules

    return SchedulerSchedules(
        table, client("scheduler"), group=group, target_arn=target, role_arn=role, dead_letter_arn=dead_letters
    )


def _schedule_fires(schedules: ScheduleSync) -> ScheduleFires | None:
    """How the schedules function reads a fire: the format the Scheduler adapter writes, when deployed."""
    from mcpdo.adapters.scheduler_schedules import SchedulerFires, SchedulerSchedules

    return SchedulerFires() if isinstance(schedules, SchedulerSchedules) else None


def _aws_mailer(aws: AwsResources, table: DynamoTable, client: Callable[..., Any]) -> Mailer:
    if aws.mail_from is None:
        from mcpdo.adapters.not_deployed import MailerNotDeployed

        return MailerNotDeployed()
    from mcpdo.adapters.ses_mailer import SesMailer

    return SesMailer(client("sesv2"), table, sender=aws.mail_from)


def _all_or_none(part: str, settings: dict[str, str | None]) -> None:
    """A part half configured would accept work it cannot finish: refuse it, naming what is missing."""
    missing = [name for name, value in settings.items() if value is None]
    if missing and len(missing) < len(settings):
        raise InputError(f"Settings for {part} are incomplete: {', '.join(missing)} must be set too")


def _models(settings: Settings) -> ModelProvider | None:
    """The model provider MCPDO_AI_PROVIDER names (Bedrock by default on AWS); None when there is none."""
    ai = settings.ai
    if ai.provider == "openai" and ai.base_url is not None:
        from mcpdo.adapters.openai_models import OpenAIModels

        return OpenAIModels(ai.base_url, ai.api_key, timeout_s=ai.timeout_s, retries=ai.max_retries)
    if ai.provider == "bedrock":
        import boto3
        from botocore.config import Config

        from mcpdo.adapters.bedrock_models import BedrockModels

        # botocore's own retries off: the adapter retries throttling itself, one rule and one count.
        config = Config(retries={"total_max_attempts": 1}, read_timeout=ai.timeout_s, connect_timeout=10)
        return BedrockModels(boto3.client("bedrock-runtime", config=config), retries=ai.max_retries)
    return None


def _web(settings: Settings) -> WebClient:
    web = settings.web
    allow = Allowlist.parse(web.fetch_allow)  # a bad allow-list is an error at start, not at the first fetch

    def client() -> WebClient:
        from mcpdo.adapters.httpx_web import HttpxWebClient

        return HttpxWebClient(
            allow=allow,
            connect_timeout_s=web.connect_timeout_s,
            read_timeout_s=web.read_timeout_s,
            max_response_bytes=web.max_response_bytes,
            user_agent=USER_AGENT,
        )

    return OnFirstRequest(client)


class OnFirstRequest:
    """A WebClient made when the first request needs it: importing httpx and setting up its TLS takes ~90 ms,
    which `mcpdo run` and a Lambda's INIT would otherwise pay though most executions never fetch."""

    def __init__(self, make: Callable[[], WebClient]) -> None:
        self._make = make
        self._client: WebClient | None = None

    async def request(self, request: HttpRequest, *, guarded: bool) -> HttpResponse:
        if self._client is None:
            self._client = self._make()
        return await self._client.request(request, guarded=guarded)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
