"""ExchangeRunner with Redis away: the backlog is kept and retried, within its two bounds.

Each test runs on a private append-only Redis that it stops and starts on the same port and
data dir, so the session survives and the runner can store the exchange's end afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from server.embedded_redis import RedisProcess
from streams.config import EngineConfig
from streams.runner import ExchangeRunner
from streams.types import Exchange
from tests.core.helpers import PacedBackend, Rig, Step, log_deltas, rig_on, text, until

INTERVAL_MS = 50


@pytest.fixture
def redis(redis_factory: Callable[..., RedisProcess]) -> RedisProcess:
    return redis_factory(appendonly=True)


@pytest.fixture
def outage_config(key_prefix: str) -> EngineConfig:
    return EngineConfig(key_prefix=key_prefix, backlog_max_chars=100, redis_outage_bound_seconds=30)


@pytest.fixture
async def outage_rig(redis: RedisProcess, outage_config: EngineConfig) -> AsyncIterator[Rig]:
    async with rig_on(redis.url, outage_config) as rig:
        yield rig


async def first_flush(rig: Rig, runner: ExchangeRunner) -> None:
    sid, xid = runner.spec.sid, runner.spec.xid
    await until(lambda: log_deltas(rig.store, sid, xid), lambda deltas: len(deltas) == 1)


async def after_restart(
    redis: RedisProcess, rig: Rig, task: asyncio.Task[Exchange | None]
) -> Exchange | None:
    """Start Redis again and wait for the runner to end; the test's own reading client
    drops its pooled connections to the old server process."""
    redis.start()
    await rig.store.redis.connection_pool.disconnect()
    return await asyncio.wait_for(task, 10.0)


async def logged_text(rig: Rig, runner: ExchangeRunner) -> str:
    deltas = await log_deltas(rig.store, runner.spec.sid, runner.spec.xid)
    assert [d.seq for _, d in deltas] == list(range(1, len(deltas) + 1))
    return "".join(d.text for _, d in deltas)


async def test_text_written_during_a_short_outage_is_flushed_when_redis_returns(
    redis: RedisProcess, outage_rig: Rig
) -> None:
    down, back = asyncio.Event(), asyncio.Event()
    observer_saw_outage = outage_rig.observer.outage_seen
    steps: list[Step] = [text("a"), down, text("b"), observer_saw_outage]
    steps += [text("c"), back, text("d")]
    runner = await outage_rig.runner(PacedBackend(steps), interval_ms=INTERVAL_MS)
    task = asyncio.create_task(runner.run())
    await first_flush(outage_rig, runner)

    redis.stop()
    down.set()
    await asyncio.wait_for(observer_saw_outage.wait(), 5.0)
    back.set()
    exchange = await after_restart(redis, outage_rig, task)

    assert exchange is not None
    assert (exchange.status, exchange.reply_text) == ("completed", "abcd")
    assert await logged_text(outage_rig, runner) == "abcd"
    assert await outage_rig.store.get_exchange(runner.spec.sid, "x1") == exchange


async def test_a_backlog_past_its_bound_during_an_outage_fails_the_exchange(
    redis: RedisProcess, outage_rig: Rig
) -> None:
    down = asyncio.Event()
    observer_saw_outage = outage_rig.observer.outage_seen
    # 1 + 60 chars wait within the 100-char bound; the next 60 take the backlog past it.
    steps: list[Step] = [text("a"), down, text("b"), observer_saw_outage]
    steps += [text("x" * 60), text("y" * 60)]
    backend = PacedBackend([*steps, 0.5, text("never")])
    runner = await outage_rig.runner(backend, interval_ms=INTERVAL_MS)
    task = asyncio.create_task(runner.run())
    await first_flush(outage_rig, runner)

    redis.stop()
    down.set()
    await asyncio.wait_for(backend.closed.wait(), 5.0)
    exchange = await after_restart(redis, outage_rig, task)

    assert exchange is not None
    assert exchange.status == "failed"
    assert exchange.error is not None and exchange.error.code == "redis_unavailable"
    assert "backlog" in exchange.error.message
    assert exchange.reply_text == "ab" + "x" * 60 + "y" * 60
    assert await logged_text(outage_rig, runner) == exchange.reply_text
    assert await outage_rig.store.get_exchange(runner.spec.sid, "x1") == exchange


async def test_an_outage_longer_than_its_bound_fails_the_exchange(
    redis: RedisProcess, key_prefix: str
) -> None:
    config = EngineConfig(key_prefix=key_prefix, redis_outage_bound_seconds=0.3)
    async with rig_on(redis.url, config) as rig:
        down = asyncio.Event()
        backend = PacedBackend([text("a"), down, text("b"), asyncio.Event()])
        runner = await rig.runner(backend, interval_ms=INTERVAL_MS)
        task = asyncio.create_task(runner.run())
        await first_flush(rig, runner)

        redis.stop()
        down.set()
        await asyncio.wait_for(backend.closed.wait(), 5.0)
        exchange = await after_restart(redis, rig, task)

        assert exchange is not None
        assert exchange.status == "failed"
        assert exchange.error is not None and exchange.error.code == "redis_unavailable"
        assert "unreachable for over 0.3s" in exchange.error.message
        assert exchange.reply_text == "ab"
        assert await logged_text(rig, runner) == "ab"
        assert await rig.store.get_exchange(runner.spec.sid, "x1") == exchange


async def test_flushes_are_retried_no_faster_than_the_outage_retry_interval(
    redis: RedisProcess, outage_rig: Rig
) -> None:
    down = asyncio.Event()
    backend = PacedBackend([text("a"), down, text("b"), asyncio.Event()])
    runner = await outage_rig.runner(backend, interval_ms=INTERVAL_MS)
    task = asyncio.create_task(runner.run())
    await first_flush(outage_rig, runner)

    redis.stop()
    down.set()
    await asyncio.wait_for(outage_rig.observer.outage_seen.wait(), 5.0)
    # A window to count retries in, not synchronisation: retries should be 0.25 s apart.
    window = 0.6
    await asyncio.sleep(window)
    errors = outage_rig.observer.redis_errors
    runner.request_cancel()
    await after_restart(redis, outage_rig, task)

    assert errors <= 1 + window / 0.25 + 2
