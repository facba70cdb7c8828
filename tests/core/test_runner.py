"""ExchangeRunner: the throttle (leading edge, merging), cancels, backend errors, deleted sessions.

Flush times are read from the replay log: a stream id is Redis's clock (epoch ms) at the write.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from streams.backends.base import BackendError, Chunk
from streams.keys import Keys
from streams.runner import ExchangeRunner
from streams.store import Store
from streams.types import Exchange, Usage
from tests.core.helpers import (
    OWNER,
    PacedBackend,
    Rig,
    Step,
    entry_ms,
    log_deltas,
    log_end,
    new_session,
    text,
    until,
    until_true,
)


def start(runner: ExchangeRunner) -> asyncio.Task[Exchange | None]:
    return asyncio.create_task(runner.run())


async def finished(task: asyncio.Task[Exchange | None]) -> Exchange | None:
    return await asyncio.wait_for(task, 5.0)


async def logged(store: Store, runner: ExchangeRunner, count: int) -> list[tuple[str, int, str]]:
    """Wait until the log holds ``count`` deltas; return (id, seq, text) of each."""
    sid, xid = runner.spec.sid, runner.spec.xid
    found = await until(lambda: log_deltas(store, sid, xid), lambda d: len(d) >= count)
    return [(entry_id, delta.seq, delta.text) for entry_id, delta in found]


async def test_a_finished_reply_is_stored_completed_with_its_text_and_usage(
    rig: Rig, store: Store, redis_client: Redis, keys: Keys
) -> None:
    backend = PacedBackend(
        [
            Chunk(usage=Usage(input_tokens=5)),
            text("Hello"),
            text(" world"),
            Chunk(usage=Usage(input_tokens=5, output_tokens=2), finish_reason="stop"),
        ]
    )
    runner = await rig.runner(backend)
    sid = runner.spec.sid

    exchange = await finished(start(runner))

    assert exchange is not None
    assert (exchange.status, exchange.finish_reason, exchange.reply_text) == (
        "completed",
        "stop",
        "Hello world",
    )
    assert (exchange.usage.input_tokens, exchange.usage.output_tokens) == (5, 2)
    assert await store.get_exchange(sid, "x1") == exchange
    assert await log_end(store, sid, "x1") == exchange
    assert "".join(d.text for _, d in await log_deltas(store, sid, "x1")) == "Hello world"
    session = await store.get_session(OWNER, sid)
    assert (session.status, session.answered_count, session.usage.total_tokens) == (
        "idle",
        1,
        7,
    )
    assert await redis_client.exists(keys.lock(sid)) == 0
    assert rig.observer.statuses == ["completed"]


async def test_the_time_of_the_first_text_is_stored_with_the_exchange(
    rig: Rig, store: Store
) -> None:
    backend = PacedBackend([0.3, text("late"), 0.2, text(" start")])
    runner = await rig.runner(backend)

    exchange = await finished(start(runner))

    assert exchange is not None and exchange.first_token_ms is not None
    assert abs(exchange.first_token_ms - backend.yielded_ms[0]) < 20  # not the second chunk's
    assert exchange.first_token_ms - exchange.created_ms >= 300
    stored = await store.get_exchange(runner.spec.sid, "x1")
    assert stored is not None and stored.first_token_ms == exchange.first_token_ms


async def test_the_first_chunk_is_flushed_at_once_not_after_an_interval(
    rig: Rig, store: Store
) -> None:
    interval_ms = 1000
    release = asyncio.Event()
    backend = PacedBackend([text("first"), release])
    runner = await rig.runner(backend, interval_ms=interval_ms)
    task = start(runner)

    [(entry_id, seq, value)] = await logged(store, runner, 1)
    release.set()
    exchange = await finished(task)

    assert (seq, value) == (1, "first")
    assert entry_ms(entry_id) - backend.yielded_ms[0] < interval_ms / 2
    assert exchange is not None and exchange.reply_text == "first"


async def test_chunks_within_an_interval_of_a_flush_are_merged_into_the_next_one(
    rig: Rig, store: Store
) -> None:
    interval_ms = 200
    release = asyncio.Event()
    steps: list[Step] = [text("a"), 0.05, text("b"), 0.01, text("c"), 0.01, text("d"), release]
    runner = await rig.runner(PacedBackend(steps), interval_ms=interval_ms)
    task = start(runner)

    flushes = await logged(store, runner, 2)
    release.set()
    exchange = await finished(task)

    assert [(seq, value) for _, seq, value in flushes] == [(1, "a"), (2, "bcd")]
    gap = entry_ms(flushes[1][0]) - entry_ms(flushes[0][0])
    assert interval_ms - 1 <= gap < 2 * interval_ms
    assert exchange is not None and exchange.reply_text == "abcd"
    assert len(await log_deltas(store, runner.spec.sid, runner.spec.xid)) == 2


async def test_a_chunk_after_a_quiet_interval_is_flushed_at_once(rig: Rig, store: Store) -> None:
    interval_ms = 200
    release = asyncio.Event()
    backend = PacedBackend([text("a"), 2.5 * interval_ms / 1000, text("b"), release])
    runner = await rig.runner(backend, interval_ms=interval_ms)
    task = start(runner)

    flushes = await logged(store, runner, 2)
    release.set()
    await finished(task)

    assert [(seq, value) for _, seq, value in flushes] == [(1, "a"), (2, "b")]
    assert entry_ms(flushes[1][0]) - backend.yielded_ms[1] < interval_ms / 2


async def test_the_last_text_keeps_the_interval_after_the_reply_ends(
    rig: Rig, store: Store
) -> None:
    interval_ms = 200
    runner = await rig.runner(PacedBackend([text("a"), 0.02, text("b")]), interval_ms=interval_ms)

    exchange = await finished(start(runner))

    flushes = await logged(store, runner, 2)
    assert [(seq, value) for _, seq, value in flushes] == [(1, "a"), (2, "b")]
    assert entry_ms(flushes[1][0]) - entry_ms(flushes[0][0]) >= interval_ms - 1
    assert exchange is not None and exchange.status == "completed"


async def test_a_cancel_mark_stops_a_running_exchange_at_its_next_flush(
    rig: Rig, store: Store, redis_client: Redis, keys: Keys
) -> None:
    words = [f"w{i} " for i in range(200)]
    steps: list[Step] = []
    for word in words:
        steps += [text(word), 0.02]
    backend = PacedBackend(steps)
    runner = await rig.runner(backend, interval_ms=50)
    sid = runner.spec.sid
    task = start(runner)
    await logged(store, runner, 2)

    await store.request_cancel(sid)
    exchange = await finished(task)

    assert exchange is not None
    assert (exchange.status, exchange.finish_reason) == ("cancelled", "cancelled")
    logged_text = "".join(d.text for _, d in await log_deltas(store, sid, "x1"))
    assert exchange.reply_text == logged_text
    assert "w1 " in exchange.reply_text
    assert "".join(words).startswith(exchange.reply_text)
    assert len(exchange.reply_text) < len("".join(words))
    assert backend.closed.is_set()
    assert await store.get_exchange(sid, "x1") == exchange
    assert await redis_client.exists(keys.cancel(sid), keys.lock(sid)) == 0


async def test_cancelling_the_runner_keeps_the_partial_text_including_unflushed_text(
    rig: Rig, store: Store
) -> None:
    backend = PacedBackend([text("a"), 0.01, text("b"), asyncio.Event()])
    runner = await rig.runner(backend, interval_ms=100)
    task = start(runner)
    await until_true(lambda: len(backend.yielded_ms) == 2)

    runner.request_cancel()
    exchange = await finished(task)

    assert exchange is not None
    assert (exchange.status, exchange.finish_reason, exchange.reply_text) == (
        "cancelled",
        "cancelled",
        "ab",
    )
    flushes = await log_deltas(store, runner.spec.sid, "x1")
    assert [(d.seq, d.text) for _, d in flushes] == [(1, "a"), (2, "b")]
    assert await log_end(store, runner.spec.sid, "x1") == exchange


async def test_a_backend_error_fails_the_exchange_with_its_code_and_the_text_so_far(
    rig: Rig, store: Store
) -> None:
    error = BackendError("rate_limited", "the upstream is busy", retryable=True)
    runner = await rig.runner(PacedBackend([text("so far"), error]))

    exchange = await finished(start(runner))

    assert exchange is not None
    assert (exchange.status, exchange.finish_reason, exchange.reply_text) == (
        "failed",
        "error",
        "so far",
    )
    assert exchange.error is not None
    assert (exchange.error.code, exchange.error.retryable) == ("rate_limited", True)
    assert await store.get_exchange(runner.spec.sid, "x1") == exchange


async def test_a_runner_whose_session_is_deleted_stops_and_writes_nothing_back(
    rig: Rig, store: Store, redis_client: Redis, keys: Keys
) -> None:
    deleted = asyncio.Event()
    backend = PacedBackend([text("a"), deleted, text("b"), asyncio.Event()])
    sid = await new_session(store)
    runner = await rig.runner(backend, sid=sid, interval_ms=50)
    task = start(runner)
    await logged(store, runner, 1)

    assert await store.delete_session(OWNER, sid)
    deleted.set()
    outcome = await finished(task)

    assert outcome is None
    assert backend.closed.is_set()
    assert [key async for key in redis_client.scan_iter(match=keys.session_pattern(sid))] == []
    # The runner ended it as failed (session_deleted); there was nowhere left to store that.
    assert rig.observer.statuses == ["failed"]
