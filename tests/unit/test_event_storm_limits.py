"""Event depth as `send` assigns it, and the two storm settings as the environment gives them."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcpdo.identity import Identity
from mcpdo.ports import Event
from mcpdo.sdk.events import EventContext, EventsApi
from mcpdo.settings import Settings

pytestmark = pytest.mark.anyio

OWNER = Identity.for_roles(id="key_1", tenant="acme", auth_type="apiKey", roles=("admin",))


async def sent_by(context: EventContext) -> Event:
    published: list[Event] = []

    async def publish(event: Event) -> None:
        published.append(event)

    await EventsApi(OWNER, context, publish).send(["Storm.tick", {"n": 1}])
    [event] = published
    return event


def parent(depth: int) -> Event:
    return Event(
        id="evt_parent",
        type="Storm.tick",
        data={},
        source="test",
        time="2026-01-01T00:00:00.000Z",
        tenant="acme",
        correlation_id="evt_root",
        depth=depth,
    )


async def test_an_event_sent_by_a_script_has_depth_zero() -> None:
    assert (await sent_by(EventContext("script", source="script:key_1"))).depth == 0


async def test_an_event_sent_while_registering_a_module_has_depth_zero() -> None:
    assert (await sent_by(EventContext("register", source="https://acme.test/m"))).depth == 0


@pytest.mark.parametrize("depth", [0, 3, 8])
async def test_an_event_sent_by_a_handler_is_one_hop_deeper_than_the_event_that_triggered_it(depth: int) -> None:
    event = await sent_by(
        EventContext(
            "handler",
            source="https://acme.test/m",
            parent=parent(depth),
            delivery_key="evt_parent/https://acme.test/m#0",
        )
    )
    assert event.depth == depth + 1
    assert event.correlation_id == "evt_root"


def test_the_hop_limit_and_the_per_send_cap_default_to_8_and_100(tmp_path: Path) -> None:
    settings = Settings.from_env({"MCPDO_DATA_DIR": str(tmp_path)})
    assert (settings.event_hop_limit, settings.max_deliveries_per_send) == (8, 100)


def test_the_hop_limit_and_the_per_send_cap_are_read_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"MCPDO_DATA_DIR": str(tmp_path), "MCPDO_EVENT_HOP_LIMIT": "0", "MCPDO_MAX_DELIVERIES_PER_SEND": "3"}
    )
    assert (settings.event_hop_limit, settings.max_deliveries_per_send) == (0, 3)
