"""The reference's AI and API examples run against a server whose model provider and external web services
are fakes on loopback: the OpenAI-compatible adapter and the fetch client are the real ones."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.fake_models import FakeModelServer, fake_model_server
from tests.support.fake_web import FakeWeb, fake_web
from tests.support.seed import ai_settings
from tests.support.server import RunningServer, start_server, stop_server


@dataclass
class AiDeployment:
    server: RunningServer
    models: FakeModelServer
    web: FakeWeb


@pytest.fixture(scope="module")
def ai_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AiDeployment]:
    with fake_model_server() as models, fake_web() as web:
        running = start_server(tmp_path_factory.mktemp("ai"), **ai_settings(models, web))
        try:
            yield AiDeployment(running, models, web)
        finally:
            stop_server(running)


@pytest.fixture
def ai(ai_deployment: AiDeployment) -> AiDeployment:
    """The deployment with the fakes reset for one test."""
    ai_deployment.models.canned.clear()
    ai_deployment.models.requests.clear()
    ai_deployment.models.failures.clear()
    ai_deployment.web.routes.clear()
    ai_deployment.web.received.clear()
    return ai_deployment
