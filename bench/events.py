"""Events through the embedded default, in one process: send-to-handler latency and sustained events/s.

Baselines from the same run: a no-op sandbox execution (a handler start is at least one), and no-op
executions/s straight through the sandbox at the worker's concurrency.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

from mcpdo import eventloop
from mcpdo.bootstrap import App, build_local
from mcpdo.ids import ulid
from mcpdo.ports import Event
from mcpdo.sandbox.types import ExecutionRequest
from mcpdo.settings import Settings
from mcpdo.timeparse import format_iso, utc_now

# How often the throughput row looks whether the oldest event still waiting was handled.
POLL_S = 0.01

MODULE = """---
$id: /bench/events
---
on($.Bench.ping, async (data, event) => {
  await db.create('Latency', { n: data.n, sentAt: event.time, startedAt: new Date().toISOString() })
})
on($.Bench.flood, async () => {})
"""


async def measure(tmp: Path) -> dict[str, list[float] | float]:
    settings = replace(Settings.from_env({}), data_dir=tmp / "events-state")
    app = build_local(settings)
    await app.start(worker=True)
    try:
        secret, _ = await app.auth.create_key("bench")
        admin = await app.auth.authenticate(f"Bearer {secret}")
        registered = await app.tool.call({"module": MODULE}, admin)
        assert not registered.is_error, registered.texts
        await _wait_leader(app)
        latencies = await _latencies(app, admin, count=40)
        rate = await _throughput(app, count=400)
        baseline_ms, baseline_rate = await _sandbox_baseline(app)
        return {
            "latency_ms": latencies,
            "events_per_s": rate,
            "noop_exec_ms": baseline_ms,
            "noop_exec_per_s": baseline_rate,
        }
    finally:
        await app.close()


async def _latencies(app: App, admin: object, count: int) -> list[float]:
    samples = []
    for n in range(count):
        result = await app.tool.call({"script": f"await send($.Bench.ping, {{ n: {n} }})"}, admin)  # type: ignore[arg-type]
        assert not result.is_error, result.texts
        record = await _wait_record(app, n)
        sent = _ms(record["sentAt"])
        samples.append(_ms(record["startedAt"]) - sent)
    return samples


async def _wait_record(app: App, n: int) -> dict[str, str]:
    from mcpdo.query import parse_list_options

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = await app.adapters.store.list("default", "Latency", parse_list_options({"where": {"n": n}}))
        if rows:
            return rows[0]
        await asyncio.sleep(0.001)
    raise RuntimeError(f"event {n} was not handled within 10 s")


async def _throughput(app: App, count: int) -> float:
    ids = [f"evt_{ulid()}" for _ in range(count)]
    started = time.perf_counter()
    for event_id in ids:
        await app.publisher.publish(
            Event(
                id=event_id,
                type="Bench.flood",
                data={},
                source="bench",
                time=format_iso(utc_now()),
                tenant="default",
                correlation_id=event_id,
            )
        )
    # Oldest first, one at a time: the worker claims in due order, so once the oldest is done most after it
    # are too, and checking costs one query per event (checking them all each turn took a third of the CPU).
    # Every POLL_S, not more often: each look is a transaction in this process, whose CPU the worker needs (at
    # 2 ms, looking cost an eighth of it); the rate is at most one interval (about 2%) low for it.
    pending = deque(ids)
    while pending:
        if all(d.status == "done" for d in await app.adapters.deliveries.deliveries(pending[0])):
            pending.popleft()
        else:
            await asyncio.sleep(POLL_S)
    return count / (time.perf_counter() - started)


async def _sandbox_baseline(app: App) -> tuple[list[float], float]:
    request = ExecutionRequest(code="1", limits=app.settings.limits(anonymous=False), readonly=False)

    async def host(name: str, args: list[object]) -> object:
        return None

    samples = []
    for _ in range(100):
        started = time.perf_counter()
        await app.adapters.sandbox.execute(request, host)
        samples.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.002)
    count = 0
    stop = time.perf_counter() + 2.0

    async def loop() -> None:
        nonlocal count
        while time.perf_counter() < stop:
            await app.adapters.sandbox.execute(request, host)
            count += 1

    began = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(4)))
    return samples, count / (time.perf_counter() - began)


async def _wait_leader(app: App) -> None:
    deadline = time.monotonic() + 15
    assert app.worker is not None, "the local deployment runs a worker"
    while not app.worker.is_leader:
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not take the lease")
        await asyncio.sleep(0.05)


def _ms(iso: str) -> float:
    from mcpdo.timeparse import parse_iso_ms

    value = parse_iso_ms(iso)
    assert value is not None
    return float(value)


def run(tmp: Path) -> dict[str, list[float] | float]:
    return eventloop.run(measure(tmp))


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        print(run(Path(folder)))
