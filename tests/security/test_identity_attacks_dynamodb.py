"""The audit trail on DynamoDB (moto) against tenant names an operator or a token's tenant claim may give:
whether any tenant can keep its executions out of the trail, or read another's through a lookalike name.

Each test either shows a weakness (it asserts the safe behaviour and fails while the weakness is there) or
shows that an attack is already defended.
"""

from __future__ import annotations

import boto3
import pytest
from mcpdo.adapters.dynamodb_audit import DynamoAuditLog
from mcpdo.adapters.dynamodb_store import DynamoEntityStore
from mcpdo.adapters.dynamodb_table import DynamoTable
from mcpdo.auth import check_tenant
from mcpdo.errors import InputError
from mcpdo.ports import ExecutionRecord
from mcpdo.query import parse_list_options

from tests.support.aws import REGION

pytestmark = pytest.mark.anyio


def _table(state_table: str) -> DynamoTable:
    return DynamoTable(boto3.client("dynamodb", region_name=REGION), state_table, what="state table")


def _entry(tenant: str, n: int) -> ExecutionRecord:
    return ExecutionRecord(
        id=f"exe_{n:026d}",
        tenant=tenant,
        caller="key_0123456789abcdef",
        auth_type="apiKey",
        kind="script",
        script_hash="0" * 64,
        started_at=f"2026-01-01T00:00:{n:02d}.000Z",
        duration_ms=1,
        outcome="ok",
        calls=(("db.create", 1),),
    )


@pytest.mark.parametrize("tenant", ["##" + "\U0001f600" * 510, "#" * 200 + "%" * 200, "\U0001f600" * 128])
async def test_a_tenant_the_rule_accepts_can_always_be_audited(state_table: str, tenant: str) -> None:
    """Attack: a tenant name (from `--tenant` or a token's tenant claim) whose record keys fit DynamoDB's
    2048-byte partition-key limit (`ENT#<tenant>#N`) but whose audit partition, `AUDIT#` + key_part(tenant)
    with every `#` and `%` percent-encoded, does not: every audit write of that tenant would fail, and
    Auditor.record only logs the failure, so the tenant's executions would never reach the trail.

    Safe: the tenant rule counts the bytes the keys hold (UTF-8, with the encoding), so such a name is
    refused before anything is stored; any name it accepts can be audited.
    """
    try:
        check_tenant(tenant, "--tenant")
    except InputError as exc:
        assert "at most 512 bytes" in exc.message
        return
    table = _table(state_table)
    store = DynamoEntityStore(table)
    await store.create(tenant, "N", {"text": "written and read"})
    assert len(await store.list(tenant, "N", parse_list_options({}))) == 1
    await DynamoAuditLog(table, 86_400).record(_entry(tenant, 1))


def test_the_tenant_rule_refuses_names_whose_keys_would_not_fit() -> None:
    for tenant in ("##" + "\U0001f600" * 510, "#" * 200 + "%" * 200):
        with pytest.raises(InputError, match="at most 512 bytes"):
            check_tenant(tenant, "--tenant")
    check_tenant("\U0001f600" * 128, "--tenant")  # 512 bytes exactly


async def test_lookalike_tenants_never_read_each_others_trail(state_table: str) -> None:
    """Attack: tenants named like another's audit partition (`acme#x`, `acme%23x`, `acme%`, a prefix of it)
    list their trail hoping for `acme`'s entries. Defended: every tenant reads exactly its own."""
    log = DynamoAuditLog(_table(state_table), 86_400)
    tenants = ["acme", "acme#x", "acme%23x", "acme%", "acm", "AUDIT#acme"]
    for n, tenant in enumerate(tenants):
        await log.record(_entry(tenant, n))
    for tenant in tenants:
        assert [entry.tenant for entry in await log.list(tenant, limit=50)] == [tenant]
