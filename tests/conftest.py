"""Shared fixtures: the anyio backend, and a real server process for tests that talk MCP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.local_issuer import LocalIssuer, local_issuer
from tests.support.runtime_api import RuntimeApi, runtime_api
from tests.support.server import RunningServer, start_server, stop_server


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server for the session; every boto3 client of the test process talks to it."""
    from moto.server import ThreadedMotoServer

    from tests.support.aws import moto_environment

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with moto_environment(endpoint):
        yield endpoint
    moto.stop()


@pytest.fixture
def state_table(moto_endpoint: str) -> str:
    """A fresh state table, made from template.yaml's own definition."""
    from tests.support.aws import create_table

    return create_table()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # Short budgets keep the hostile-input tests quick; the defaults are covered in unit tests.
    running = start_server(tmp_path_factory.mktemp("state"), MCPDO_ANONYMOUS_TIMEOUT_MS="500", MCPDO_TIMEOUT_MS="3000")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def events_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose failed deliveries retry after 50, 100 and 200 ms, so dead letters come quickly."""
    running = start_server(tmp_path_factory.mktemp("events"), MCPDO_RETRY_BASE_MS="50")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    """A loopback OpenID issuer (tests/support/local_issuer.py) for the tests of one module."""
    with local_issuer() as running:
        yield running


@pytest.fixture
def api() -> Iterator[RuntimeApi]:
    """A fake of Lambda's Runtime API (its extension part), for a function whose extension registers there."""
    with runtime_api() as running:
        yield running
