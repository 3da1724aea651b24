"""The one retry rule of the model providers: throttling and server errors are tried again with exponential
back-off and full jitter (tenacity), everything else fails at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from mcpdo.errors import ModelError

T = TypeVar("T")
MAX_WAIT_SECONDS = 8.0


class Retryable(ModelError):
    """A provider answer worth trying again (429, 5xx, a dropped connection); raised as itself when the
    retries run out, its text saying what the last attempt got."""


async def with_retries(call: Callable[[], Awaitable[T]], *, retries: int, wait_base_s: float) -> T:
    """`call()`, tried up to `retries` more times while it raises Retryable."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait_random_exponential(multiplier=wait_base_s, max=MAX_WAIT_SECONDS),
        retry=retry_if_exception_type(Retryable),
        reraise=True,
    )
    return await retrying(call)
