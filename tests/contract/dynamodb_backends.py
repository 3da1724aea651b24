"""The DynamoDB adapters under contract, each test on a fresh state table of the session's moto server.

`dynamo_table` builds the table a DynamoDB factory needs. The `backend` fixture here runs the ModuleStore
and SubscriptionSync suites over every kind of `events_backends.BACKEND_FACTORIES` and over DynamoDB, whose
backend has only those two ports on the table: its other ports are the in-memory ones, which those suites
use only through `register` (schedules) or not at all. Suites import `dynamo_backend_fixture` for it, in
place of `events_backends.backend_fixture`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import pytest
from mcpdo.adapters.dynamodb_modules import DynamoModuleStore
from mcpdo.adapters.dynamodb_subscriptions import DynamoSubscriptions
from mcpdo.adapters.dynamodb_table import DynamoTable
from mcpdo.adapters.memory import MemoryMailer, MemoryRunLog
from mcpdo.adapters.memory_events import MemoryDeliveryStore, MemorySchedules

from tests.contract.events_backends import BACKEND_FACTORIES, EventsBackend, FakeClock
from tests.support.aws import REGION


def dynamo_table(request: pytest.FixtureRequest) -> DynamoTable:
    """A fresh state table (template.yaml's definition) in the moto server, with a client pointed at it."""
    name = request.getfixturevalue("state_table")  # starts the moto server first when it is not running yet
    return DynamoTable(boto3.client("dynamodb", region_name=REGION), name, what="state table")


def dynamo_backend(request: pytest.FixtureRequest, clock: FakeClock) -> EventsBackend:
    """Modules and subscriptions on DynamoDB; the ports these suites do not examine in memory."""
    table = dynamo_table(request)
    return EventsBackend(
        modules=DynamoModuleStore(table),
        subscriptions=DynamoSubscriptions(table),
        schedules=MemorySchedules(),
        queue=MemoryDeliveryStore(clock=clock),
        runs=MemoryRunLog(),
        mailer=MemoryMailer(clock=clock),
        clock=clock,
    )


@pytest.fixture(name="backend", params=sorted(["dynamodb", *BACKEND_FACTORIES]))
async def dynamo_backend_fixture(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock, anyio_backend: str
) -> AsyncIterator[EventsBackend]:
    """A fresh, empty backend of each kind, DynamoDB included."""
    if request.param == "dynamodb":
        events = dynamo_backend(request, clock)
    else:
        events = BACKEND_FACTORIES[request.param](tmp_path, clock)
    try:
        yield events
    finally:
        await events.close()
