"""One Lambda execution environment: built once in INIT, then reused by every invocation it serves.

INIT reads the settings, wires the app (`bootstrap.build`), and starts the sandbox's Node runners while
the MCP SDK is imported in a thread: the two slowest steps of a cold start overlap instead of adding up.
One event loop lives as long as the environment, so the runners and their pipes survive between
invocations (Lambda freezes the process in between; nothing runs while frozen).

Where Lambda's Runtime API is there, INIT also registers an internal extension (mcpdo.adapters.lambda_extension):
each invocation's audit entries are written after its answer, before the environment takes the next one.

Each `do` call is one structured log line (caller, tenant, outcome, error kind, duration; never the script,
a key or a token) and metrics in CloudWatch's embedded format: calls, errors by kind, duration.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Coroutine, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from mcpdo import eventloop
from mcpdo.bootstrap import App, authorization_servers, build, lambda_after_answer
from mcpdo.errors import InputError
from mcpdo.ratelimit import RateLimits
from mcpdo.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics

    from mcpdo.server.lambda_http import LambdaFrontDoor
    from mcpdo.server.mcp_server import ToolCall

T = TypeVar("T")


class HeldInvocations(Protocol):
    """What the handler wraps each invocation in when work waits for its answer (the Lambda extension's)."""

    def invocation(self, request_id: str | None = None) -> AbstractContextManager[None]: ...


class LambdaEnvironment:
    """The app of one execution environment and the event loop it lives on (every function's base)."""

    def __init__(self, app: App, loop: asyncio.Runner) -> None:
        self.app = app
        self._loop = loop

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the environment's loop, where the runners live (invocations, benchmarks, tests)."""
        return self._loop.run(work)

    def close(self) -> None:
        """Stop the runners and release the clients (tests; Lambda just ends the process)."""
        self._loop.run(self.app.close())
        self._loop.close()


class LambdaRuntime(LambdaEnvironment):
    """The MCP function: the app, its front door and the event loop they run on."""

    def __init__(
        self,
        app: App,
        front_door: LambdaFrontDoor,
        loop: asyncio.Runner,
        after_answer: HeldInvocations | None = None,
    ) -> None:
        super().__init__(app, loop)
        self.front_door = front_door
        self._after_answer = after_answer

    @classmethod
    def start(cls, logger: Logger, metrics: Metrics, env: Mapping[str, str] | None = None) -> LambdaRuntime:
        """INIT: settings, wiring, warm runners; the front door is built once the SDK is imported."""
        route_core_logs(logger)
        settings = Settings.from_env(env)
        if not settings.allowed_hosts:
            # Without it the Host check would be off: the template always sets API Gateway's host.
            raise InputError("Setting 'MCPDO_ALLOWED_HOSTS' is required on Lambda: the hosts API Gateway answers on")
        loop = eventloop.runner()
        after_answer = lambda_after_answer(os.environ if env is None else env, loop.run)
        app = build(settings, after_answer=after_answer)
        loop.run(_warm_up(app))
        from mcpdo.server.lambda_http import LambdaFrontDoor

        door = LambdaFrontDoor(
            app.tool,
            app.auth,
            allowed_hosts=settings.allowed_hosts,
            limits=RateLimits.per_minute(settings.rate_limit_anonymous, settings.rate_limit_authenticated),
            observe=_Observer(metrics),
            public_url=settings.public_url,
            authorization_servers=authorization_servers(settings),
        )
        return cls(app, door, loop, after_answer)

    def handle(self, event: Mapping[str, Any], request_id: str | None = None) -> dict[str, Any]:
        """One invocation (`request_id`: Lambda's): an API Gateway v2 event in, its response out (its audit
        entries are written after it, where Lambda's Runtime API took the extension)."""
        if self._after_answer is None:
            return self.run(self.front_door.handle(event))
        with self._after_answer.invocation(request_id):
            return self.run(self.front_door.handle(event))


def route_core_logs(logger: Logger) -> None:
    """The core's lines (`mcpdo.*`, the operator's `mcpdo.operations` among them) through Powertools: the
    Logger of service `mcpdo` is that logger already; under another service name its handler is copied."""
    if logger.name != "mcpdo":
        from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

        copy_config_to_registered_loggers(source_logger=logger, include={"mcpdo"})


async def _warm_up(app: App) -> None:
    # The import holds the GIL in a thread while the runners boot in their own processes.
    await asyncio.gather(
        app.start(worker=False), asyncio.to_thread(importlib.import_module, "mcpdo.server.lambda_http")
    )


class _Observer:
    """Meters each `do` call through Powertools (its log line is the core's, `mcpdo.operations`)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def __call__(self, call: ToolCall) -> None:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        self._metrics.add_metric(name="ToolCalls", unit=MetricUnit.Count, value=1)
        self._metrics.add_metric(name="ToolDuration", unit=MetricUnit.Milliseconds, value=call.duration_ms)
        if not call.ok:
            # Its own metric set: a `kind` dimension on the shared set would split every other metric too.
            with single_metric(name="ToolErrors", unit=MetricUnit.Count, value=1) as error:
                error.add_dimension(name="kind", value=call.error_kind or "Unknown")
