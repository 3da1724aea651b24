"""One DynamoDB table shared by the AWS adapters: calls off the event loop, errors translated into ours.

The client is built in wiring (`bootstrap.build_aws`) and passed in, so a test points it at moto with
`AWS_ENDPOINT_URL` and the core never builds one. boto3 is synchronous: each call runs in a worker thread
so a slow request never stalls the other executions of the process. Error texts name the store and the
operation, never the data.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mcpdo.errors import LimitExceeded, StoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Item = dict[str, Any]
"""A DynamoDB item (or key) in the low-level client's typed form: `{"pk": {"S": "..."}}`."""

CONDITION_FAILED = "ConditionalCheckFailedException"
# Inside a transaction's cancellation reasons the same failure is named without the suffix.
CONDITION_FAILED_REASON = "ConditionalCheckFailed"
TRANSACTION_CANCELED = "TransactionCanceledException"

log = logging.getLogger(__name__)


class ConditionFailed(Exception):
    """A conditional write's condition was false; `reasons` holds a transaction's cancellation codes."""

    def __init__(self, reasons: tuple[str, ...] = ()) -> None:
        super().__init__("condition failed")
        self.reasons = reasons


class DynamoTable:
    """A table name with its client; `call` runs one operation with `TableName` filled in."""

    def __init__(self, client: DynamoDBClient, name: str, *, what: str) -> None:
        self.client = client
        self.name = name
        self.what = what

    async def call(self, operation: str, **arguments: Any) -> dict[str, Any]:
        """`client.<operation>(TableName=..., **arguments)`; ConditionFailed for a false condition."""
        return await self.raw(operation, TableName=self.name, **arguments)

    async def raw(self, operation: str, **arguments: Any) -> dict[str, Any]:
        """`client.<operation>(**arguments)` (for calls that name tables themselves, like transactions)."""
        method = getattr(self.client, operation)
        try:
            result: dict[str, Any] = await asyncio.to_thread(method, **arguments)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == CONDITION_FAILED:
                raise ConditionFailed() from exc
            if code == TRANSACTION_CANCELED:
                reasons = tuple(r.get("Code", "None") for r in exc.response.get("CancellationReasons", []))
                if CONDITION_FAILED_REASON in reasons:
                    raise ConditionFailed(reasons) from exc
            if code == "ValidationException" and "size" in str(exc).lower():
                raise LimitExceeded(
                    "item size",
                    f"The {self.what} cannot keep this: DynamoDB items hold at most 400 KB (a record's data with its "
                    "keys, a module's source) and key values at most 1 KB",
                ) from exc
            # The code names the kind of failure; the message may carry names of the table or its keys.
            log.warning("%s %s failed: %s", self.what, operation, exc)
            raise StoreError(f"The {self.what} operation {operation} failed: {code or 'error'}") from exc
        except BotoCoreError as exc:
            # Endpoint URLs and connection details stay in the server's log.
            log.warning("%s %s unavailable: %s", self.what, operation, exc)
            raise StoreError(f"The {self.what} is unavailable ({operation})") from exc
        return result

    async def query_all(self, **arguments: Any) -> list[Item]:
        """Every item a query finds, page after page (a page stops at 1 MB)."""
        items: list[Item] = []
        while True:
            page = await self.call("query", **arguments)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def query_up_to(self, limit: int, **arguments: Any) -> list[Item]:
        """The first `limit` items a query finds: a page stops at `Limit` or 1 MB, so read on until either."""
        items: list[Item] = []
        while len(items) < limit:
            page = await self.call("query", Limit=limit - len(items), **arguments)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items

    async def close(self) -> None:
        """Release the client's connections."""
        self.client.close()


def key_part(text: str) -> str:
    """`text` as a key part that never contains `#` (percent-encoded, so distinct texts stay distinct)."""
    return text.replace("%", "%25").replace("#", "%23")


def text_value(text: str) -> dict[str, str]:
    """A string attribute value."""
    return {"S": text}
