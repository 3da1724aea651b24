"""Whether a module owner may still receive a delivered event: a subscribe grant whose pattern matches it,
or the schedule grant for a schedule fire."""

from __future__ import annotations

import pytest
from mcpdo.errors import AuthenticationRequired, PermissionDenied
from mcpdo.identity import Grant, Identity
from mcpdo.sdk.events import authorize_delivery


def owner(*grants: Grant) -> Identity:
    return Identity(id="key_1", tenant="acme", auth_type="apiKey", grants=grants)


@pytest.mark.parametrize(
    "grants",
    [
        (("*", "*"),),
        (("subscribe", "*"),),
        (("subscribe", "Order.created"),),
        (("subscribe", "Order.*"),),
        (("subscribe", "*.created"),),
        (("create", "*"), ("subscribe", "Order.*")),
    ],
)
def test_a_subscribe_grant_whose_pattern_matches_the_event_lets_it_through(grants: tuple[Grant, ...]) -> None:
    authorize_delivery(owner(*grants), "Order.created")


@pytest.mark.parametrize(
    "grants",
    [
        (),
        (("create", "*"), ("read", "*")),
        (("subscribe", "Order.updated"),),
        (("subscribe", "Invoice.*"),),
        (("subscribe", "*.deleted"),),
        (("schedule", "*"),),
        (("*", "Order"),),
    ],
)
def test_no_subscribe_grant_that_matches_the_event_refuses_it(grants: tuple[Grant, ...]) -> None:
    with pytest.raises(PermissionDenied, match=r"subscribe Order\.created"):
        authorize_delivery(owner(*grants), "Order.created")


def test_a_schedule_fire_needs_the_schedule_grant_and_no_subscribe_grant_replaces_it() -> None:
    authorize_delivery(owner(("schedule", "*")), "Schedule.fired")
    with pytest.raises(PermissionDenied, match="schedule"):
        authorize_delivery(owner(("subscribe", "*"), ("subscribe", "Schedule.fired")), "Schedule.fired")


def test_an_anonymous_owner_receives_nothing() -> None:
    with pytest.raises(AuthenticationRequired):
        authorize_delivery(Identity.anonymous(), "Order.created")
