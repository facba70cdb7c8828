"""ScriptBatcher: one pipelined write per loop tick, script reloads, failures when Redis is gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from server.embedded_redis import RedisProcess, free_port
from streams.batcher import ScriptBatcher
from streams.scripts import Script


@pytest.fixture
def counter(key_prefix: str) -> Script:
    """Increments KEYS[1]; returns {ARGV[1], the new count}. Unique per test (own SHA)."""
    return Script(
        f"-- {key_prefix}\n"
        "if ARGV[1] == 'boom' then return redis.error_reply('BOOM asked for') end\n"
        "return {ARGV[1], redis.call('INCR', KEYS[1])}"
    )


@pytest.fixture
def key(key_prefix: str) -> str:
    return f"{key_prefix}:counter"


@pytest.fixture
async def private_batcher(
    redis_factory: Callable[..., RedisProcess],
) -> AsyncIterator[tuple[RedisProcess, ScriptBatcher]]:
    redis = redis_factory()
    batcher = ScriptBatcher(redis.url, timeout=2.0)
    try:
        yield redis, batcher
    finally:
        await batcher.close()


async def call(batcher: ScriptBatcher, script: Script, key: str, arg: str) -> object:
    return await asyncio.wait_for(batcher.call(script, [key], [arg]), 5.0)


async def test_calls_that_fall_due_in_one_tick_go_out_in_one_batch(
    batcher: ScriptBatcher, counter: Script, key: str
) -> None:
    assert await call(batcher, counter, key, "warm-up") == ["warm-up", 1]
    before = batcher.batches

    results = await asyncio.gather(*(call(batcher, counter, key, f"c{i}") for i in range(10)))

    assert batcher.batches - before == 1
    assert results == [[f"c{i}", i + 2] for i in range(10)]


async def test_calls_awaited_one_after_another_go_out_in_their_own_batches(
    batcher: ScriptBatcher, counter: Script, key: str
) -> None:
    await call(batcher, counter, key, "warm-up")
    before = batcher.batches

    results = [await call(batcher, counter, key, f"c{i}") for i in range(3)]

    assert batcher.batches - before == 3
    assert results == [["c0", 2], ["c1", 3], ["c2", 4]]


async def test_an_error_reply_fails_only_its_own_call_in_a_batch(
    batcher: ScriptBatcher, counter: Script, key: str
) -> None:
    await call(batcher, counter, key, "warm-up")

    results = await asyncio.gather(
        call(batcher, counter, key, "a"),
        call(batcher, counter, key, "boom"),
        call(batcher, counter, key, "b"),
        return_exceptions=True,
    )

    assert results[0] == ["a", 2]
    assert isinstance(results[1], ResponseError) and "BOOM asked for" in str(results[1])
    assert results[2] == ["b", 3]


async def test_a_script_is_loaded_again_after_script_flush(
    batcher: ScriptBatcher, counter: Script, key: str, redis_client: Redis
) -> None:
    assert await call(batcher, counter, key, "first") == ["first", 1]
    await redis_client.script_flush()
    assert await redis_client.script_exists(counter.sha) == [False]

    assert await call(batcher, counter, key, "second") == ["second", 2]

    assert await redis_client.script_exists(counter.sha) == [True]


async def test_callers_get_a_connection_error_when_redis_stops(
    private_batcher: tuple[RedisProcess, ScriptBatcher], counter: Script, key: str
) -> None:
    redis, batcher = private_batcher
    assert await call(batcher, counter, key, "up") == ["up", 1]

    redis.stop()

    with pytest.raises(RedisConnectionError):
        await call(batcher, counter, key, "down")


async def test_callers_get_a_connection_error_from_a_closed_port(counter: Script, key: str) -> None:
    batcher = ScriptBatcher(f"redis://127.0.0.1:{free_port()}/0")
    try:
        results = await asyncio.gather(
            call(batcher, counter, key, "a"),
            call(batcher, counter, key, "b"),
            return_exceptions=True,
        )
    finally:
        await batcher.close()

    assert [type(result) for result in results] == [RedisConnectionError, RedisConnectionError]


async def test_the_batcher_reconnects_and_reloads_its_scripts_after_redis_restarts(
    private_batcher: tuple[RedisProcess, ScriptBatcher], counter: Script, key: str
) -> None:
    redis, batcher = private_batcher
    assert await call(batcher, counter, key, "before") == ["before", 1]
    redis.stop()
    with pytest.raises(RedisConnectionError):
        await call(batcher, counter, key, "during")

    redis.start()

    # A fresh server without persistence: no scripts, no counter.
    assert await call(batcher, counter, key, "after") == ["after", 1]
    assert await call(batcher, counter, key, "again") == ["again", 2]
