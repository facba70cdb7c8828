"""Cache writes kept as two counters, 5-minute and 1-hour, beside their total: through the
runner into the exchange and session records, and read from records stored before the split
(whose writes were all 5-minute ones)."""

from __future__ import annotations

from redis.asyncio import Redis

from streams.backends.base import Chunk
from streams.keys import Keys
from streams.store import Store
from streams.types import Usage
from tests.core.helpers import OWNER, PacedBackend, Rig, begin, cache_writes, new_session, text


def reported(output: int, five: int, hour: int) -> Chunk:
    """An upstream usage report with a TTL breakdown of its cache writes."""
    usage = Usage(
        input_tokens=4,
        output_tokens=output,
        cache_creation_input_tokens=five + hour,
        cache_creation_5m_input_tokens=five,
        cache_creation_1h_input_tokens=hour,
    )
    return Chunk(usage=usage.totalled())


async def forget_the_split(redis: Redis, key: str, total: int) -> None:
    """Make ``key`` a record as stored before the split: ``cc`` without ``cc5m``/``cc1h``."""
    await redis.hdel(key, "cc5m", "cc1h")
    await redis.hset(key, "cc", total)


async def test_a_streamed_reply_stores_the_split_on_the_exchange_and_the_session(
    rig: Rig, store: Store
) -> None:
    backend = PacedBackend(
        [reported(1, 30, 20), text("a"), 0.08, text("b"), 0.08, reported(2, 30, 20)]
    )
    runner = await rig.runner(backend, interval_ms=20)

    exchange = await runner.run()

    assert exchange is not None and cache_writes(exchange.usage) == (50, 30, 20)
    stored = await store.get_exchange(runner.spec.sid, "x1")
    assert stored is not None and stored.usage == exchange.usage
    session = await store.get_session(OWNER, runner.spec.sid)
    assert session.usage == exchange.usage
    assert session.usage.total_tokens == 4 + 2 + 50


async def test_an_exchange_stored_before_the_split_reads_as_all_5_minute_writes(
    store: Store, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    await begin(store, sid)
    await forget_the_split(redis_client, keys.exchange(sid, "x1"), 12)

    exchange = await store.get_exchange(sid, "x1")

    assert exchange is not None and cache_writes(exchange.usage) == (12, 12, 0)
    assert exchange.usage.total_tokens == 12


async def test_a_session_stored_before_the_split_reads_as_all_5_minute_writes(
    store: Store, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    await forget_the_split(redis_client, keys.session(sid), 30)

    session = await store.get_session(OWNER, sid)

    assert cache_writes(session.usage) == (30, 30, 0)


async def test_a_session_stored_before_the_split_adds_new_writes_to_its_old_5_minute_ones(
    rig: Rig, store: Store, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    await forget_the_split(redis_client, keys.session(sid), 30)
    runner = await rig.runner(PacedBackend([text("a"), reported(1, 5, 20)]), sid=sid)

    await runner.run()

    session = await store.get_session(OWNER, sid)
    assert cache_writes(session.usage) == (55, 35, 20)
    counters = await redis_client.hmget(keys.session(sid), ["cc", "cc5m", "cc1h"])
    assert counters == ["55", "35", "20"]
