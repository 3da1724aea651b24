"""The one way a process of ours runs its event loop: uvloop where it is installed, else asyncio's.

Every SDK call of a script is a round trip over the runner's pipe, and `serve` answers over sockets; uvloop
(libuv, what Node itself runs on) wakes up for both in a fraction of the time of asyncio's selector loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a new event loop, as `asyncio.run` does."""
    with runner() as loop:
        return loop.run(main)


def runner() -> asyncio.Runner:
    """A loop that outlives one coroutine (a Lambda execution environment's), as `asyncio.Runner()` makes."""
    try:
        import uvloop
    except ImportError:  # not built for this platform
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)
