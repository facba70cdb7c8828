"""Reaper: an exchange whose runner died (its lock lapsed) ends as `failed: interrupted`."""

from __future__ import annotations

from redis.asyncio import Redis

from streams.keys import Keys
from streams.reaper import Reaper
from streams.store import Store
from tests.core.helpers import (
    OWNER,
    PacedBackend,
    Rig,
    begin,
    delta_entry,
    log_deltas,
    log_end,
    new_session,
    text,
)


async def running_with_log(store: Store, redis: Redis, keys: Keys, *texts: str) -> str:
    """A session whose exchange x1 is running and has flushed ``texts`` to its replay log."""
    sid = await new_session(store)
    await begin(store, sid, "x1")
    for seq, value in enumerate(texts, start=1):
        await redis.xadd(keys.log(sid, "x1"), {"k": "delta", "d": delta_entry(seq, value)})
    return sid


async def test_an_exchange_whose_lock_lapsed_ends_interrupted_with_its_logged_text(
    store: Store, reaper: Reaper, redis_client: Redis, keys: Keys
) -> None:
    sid = await running_with_log(store, redis_client, keys, "half ", "a reply")
    await redis_client.delete(keys.lock(sid))  # the runner's process died

    assert not await reaper.alive(sid, "x1")

    exchange = await store.get_exchange(sid, "x1")
    assert exchange is not None
    assert (exchange.status, exchange.finish_reason, exchange.reply_text) == (
        "failed",
        "interrupted",
        "half a reply",
    )
    assert exchange.error is not None
    assert (exchange.error.code, exchange.error.retryable) == ("interrupted", True)
    assert await log_end(store, sid, "x1") == exchange
    assert await redis_client.exists(keys.lock(sid)) == 0
    session = await store.get_session(OWNER, sid)
    assert (session.status, session.answered_count) == ("idle", 0)


async def test_the_reaper_leaves_an_exchange_alone_while_its_lock_is_held(
    store: Store, reaper: Reaper, redis_client: Redis, keys: Keys
) -> None:
    sid = await running_with_log(store, redis_client, keys, "still going")

    assert await reaper.alive(sid, "x1")
    assert not await reaper.reap(sid, "x1")

    exchange = await store.get_exchange(sid, "x1")
    assert exchange is not None and exchange.status == "running"
    assert await log_end(store, sid, "x1") is None
    assert await store.running_exchange_id(sid) == "x1"


async def test_the_reaper_never_ends_a_finished_exchange_again(
    store: Store, reaper: Reaper, rig: Rig
) -> None:
    runner = await rig.runner(PacedBackend([text("all done")]))
    finished = await runner.run()
    sid = runner.spec.sid

    assert not await reaper.alive(sid, "x1")

    assert not await reaper.reap(sid, "x1")
    assert await store.get_exchange(sid, "x1") == finished
    assert await log_end(store, sid, "x1") == finished
    assert [d.text for _, d in await log_deltas(store, sid, "x1")] == ["all done"]
    assert await store.running_exchange_id(sid) is None


async def test_reaping_twice_stores_one_end(
    store: Store, reaper: Reaper, redis_client: Redis, keys: Keys
) -> None:
    sid = await running_with_log(store, redis_client, keys, "cut short")
    await redis_client.delete(keys.lock(sid))

    assert await reaper.reap(sid, "x1")
    assert not await reaper.reap(sid, "x1")

    entries = await store.read_log(sid, "x1", None)
    assert [e.kind for e in entries] == ["delta", "end"]
