"""Calling AWS from the adapters (EventBridge, SQS, SES, Scheduler): each boto3 call in a worker thread, so a
slow request never stalls the event loop, its failures as our errors (naming the service and the error
code, never an endpoint or credentials), and the back-off the adapters' own retries share."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import ParamSpec, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from mcpdo.errors import StoreError

ATTEMPTS = 4
BACKOFF_SECONDS = 0.1  # retries wait up to 0.1 s, 0.2 s, 0.4 s (jittered): at most 0.7 s in all

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class AwsCallFailed(StoreError):
    """An AWS call answered with an error; `code` is its error code (the message stays in the log)."""

    def __init__(self, service: str, operation: str, code: str) -> None:
        super().__init__(f"{service} {operation} failed: {code}")
        self.code = code


async def aws_call(service: str, method: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`method(*args, **kwargs)` (a boto3 client method) in a worker thread, so a slow request never stalls
    the event loop; AwsCallFailed or StoreError naming `service`, never its endpoint or credentials."""
    operation = getattr(method, "__name__", "call")
    try:
        return await asyncio.to_thread(method, *args, **kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "") or "error"
        log.warning("%s %s failed: %s", service, operation, exc)
        raise AwsCallFailed(service, operation, code) from exc
    except BotoCoreError as exc:
        log.warning("%s %s unavailable: %s", service, operation, exc)
        raise StoreError(f"{service} is unavailable ({operation})") from exc


async def attempts(count: int = ATTEMPTS, base: float = BACKOFF_SECONDS) -> AsyncIterator[int]:
    """Attempt numbers 0 to `count` - 1, waiting the back-off before each one after the first: the loop of
    every retry the adapters do themselves (entries a batch call did not take)."""
    for attempt in range(count):
        if attempt:
            await asyncio.sleep(backoff_delay(attempt - 1, base))
        yield attempt


def backoff_delay(retry: int, base: float) -> float:
    """Seconds to wait before retry number `retry` (0 for the first): doubling, with jitter so that
    clients refused together do not come back together."""
    return float(base * 2**retry * random.uniform(0.5, 1.0))
