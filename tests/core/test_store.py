"""Store: sessions (create, read, keyset paging, delete), exchanges, the cancel mark."""

from __future__ import annotations

import msgspec
import pytest
from redis.asyncio import Redis

from streams.clock import now_ms
from streams.errors import NotFound, SessionBusy
from streams.keys import Keys
from streams.store import Store
from streams.types import NewSession, SessionQuery
from tests.core.helpers import OWNER, PacedBackend, Rig, begin, new_session, text

OTHER = "owner-2"


async def session_keys(redis: Redis, keys: Keys, sid: str) -> set[str]:
    return {str(key) async for key in redis.scan_iter(match=keys.session_pattern(sid))}


class Clock:
    """Stands in for the store's clock: each reading is ``step`` ms after the last one."""

    def __init__(self, step: int) -> None:
        self.ms = now_ms()
        self.step = step

    def __call__(self) -> int:
        self.ms += self.step
        return self.ms


@pytest.fixture
def ticking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every session is created one ms after the one before."""
    monkeypatch.setattr("streams.store.now_ms", Clock(1))


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every session is created in the same ms."""
    monkeypatch.setattr("streams.store.now_ms", Clock(0))


async def all_pages(
    store: Store, query: SessionQuery, between: int = 0
) -> tuple[list[str], list[str]]:
    """The session ids on every page of ``query``, in order, and the ids of the sessions
    created while paging: ``between`` of them before each next page is read."""
    seen: list[str] = []
    created: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_sessions(OWNER, msgspec.structs.replace(query, cursor=cursor))
        assert len(page.items) <= query.limit
        seen += [session.session_id for session in page.items]
        if page.next_cursor is None:
            return seen, created
        cursor = page.next_cursor
        created += [await new_session(store) for _ in range(between)]


async def test_a_created_session_reads_back_with_its_fields(store: Store) -> None:
    new = NewSession(agent_id="echo", title="Trip", metadata={"k": "v"}, refresh_interval_ms=250)
    created = await store.create_session(OWNER, new, "chosen-id")

    session = await store.get_session(OWNER, "chosen-id")

    assert session == created
    assert (session.session_id, session.agent_id, session.title) == ("chosen-id", "echo", "Trip")
    assert (session.metadata, session.refresh_interval_ms) == ({"k": "v"}, 250)
    assert (session.status, session.exchange_count, session.answered_count) == ("idle", 0, 0)


async def test_creating_a_session_with_a_taken_id_keeps_the_first_one(store: Store) -> None:
    await store.create_session(OWNER, NewSession(agent_id="echo", title="first"), "same-id")

    again = await store.create_session(
        OWNER, NewSession(agent_id="echo", title="second"), "same-id"
    )

    assert again.title == "first"
    with pytest.raises(NotFound):
        await store.create_session(OTHER, NewSession(agent_id="echo"), "same-id")


async def test_another_owner_cannot_read_a_session(store: Store) -> None:
    sid = await new_session(store)

    with pytest.raises(NotFound):
        await store.get_session(OTHER, sid)


@pytest.mark.usefixtures("ticking")
async def test_paging_newest_first_returns_every_session_once_in_order(store: Store) -> None:
    sids = [await new_session(store) for _ in range(7)]

    seen, _ = await all_pages(store, SessionQuery(limit=3))

    assert seen == sids[::-1]


@pytest.mark.usefixtures("frozen")
async def test_paging_through_sessions_created_in_one_millisecond_returns_each_once(
    store: Store,
) -> None:
    sids = [await new_session(store) for _ in range(7)]

    seen, _ = await all_pages(store, SessionQuery(limit=3))

    assert seen == sorted(sids, reverse=True)


@pytest.mark.usefixtures("ticking")
async def test_sessions_created_while_paging_newest_first_never_shift_the_pages(
    store: Store,
) -> None:
    sids = [await new_session(store) for _ in range(7)]

    seen, created = await all_pages(store, SessionQuery(limit=3), between=2)

    # The newcomers sort before the cursor: the pages hold exactly the original sessions.
    assert len(created) == 4
    assert seen == sids[::-1]


@pytest.mark.usefixtures("ticking")
async def test_sessions_created_while_paging_oldest_first_come_last_and_once(
    store: Store,
) -> None:
    sids = [await new_session(store) for _ in range(5)]

    seen, created = await all_pages(store, SessionQuery(limit=2, descending=False), between=1)

    assert len(created) >= 2
    assert seen == sids + created


async def test_deleting_a_session_removes_every_key_and_index_entry(
    store: Store, rig: Rig, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    runner = await rig.runner(PacedBackend([text("done")]), sid=sid, xid="x1")
    assert (await runner.run()) is not None
    await begin(store, sid, "x2")
    await store.request_cancel(sid)
    assert await session_keys(redis_client, keys, sid) == {
        keys.session(sid),
        keys.exchanges(sid),
        keys.exchange(sid, "x1"),
        keys.log(sid, "x1"),
        keys.exchange(sid, "x2"),
        keys.lock(sid),
        keys.cancel(sid),
    }

    assert await store.delete_session(OWNER, sid)

    assert await session_keys(redis_client, keys, sid) == set()
    for sort in ("created", "updated"):
        assert await redis_client.zscore(keys.index(OWNER, sort), sid) is None
    with pytest.raises(NotFound):
        await store.get_session(OWNER, sid)


async def test_another_owner_cannot_delete_a_session(
    store: Store, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)

    assert not await store.delete_session(OTHER, sid)

    assert await session_keys(redis_client, keys, sid) == {keys.session(sid)}
    assert (await store.get_session(OWNER, sid)).session_id == sid


async def test_a_second_exchange_cannot_begin_while_one_runs(store: Store) -> None:
    sid = await new_session(store)
    await begin(store, sid, "x1")

    with pytest.raises(SessionBusy):
        await begin(store, sid, "x2")

    session = await store.get_session(OWNER, sid)
    assert (session.status, session.exchange_count) == ("running", 1)
    assert await store.running_exchange_id(sid) == "x1"


async def test_an_exchange_whose_lock_lapsed_is_listed_as_interrupted(
    store: Store, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    await begin(store, sid, "x1")
    await redis_client.delete(keys.lock(sid))

    [exchange] = (await store.list_exchanges(OWNER, sid, 10, None)).items

    assert (exchange.status, exchange.finish_reason) == ("failed", "interrupted")
    assert exchange.error is not None and exchange.error.code == "interrupted"


async def test_a_cancel_mark_lapses_with_the_lock_ttl(
    store: Store, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)

    await store.request_cancel(sid)

    assert await redis_client.get(keys.cancel(sid)) == "1"
    ttl = await redis_client.pttl(keys.cancel(sid))
    assert 0 < ttl <= store.config.lock_ttl_ms
