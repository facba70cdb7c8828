"""Store: numbered pages with exact totals, a session's opaque state, finding a running exchange."""

from __future__ import annotations

import pytest

from streams.clock import now_ms
from streams.store import Store
from streams.types import NewSession, SessionPatch, SessionSearch
from tests.core.helpers import OWNER, begin

OTHER = "owner-2"


class Clock:
    """Stands in for the store's clock: each reading is one ms after the last one."""

    def __init__(self) -> None:
        self.ms = now_ms()

    def __call__(self) -> int:
        self.ms += 1
        return self.ms


@pytest.fixture(autouse=True)
def ticking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streams.store.now_ms", Clock())


async def create(store: Store, owner: str = OWNER, **fields: object) -> str:
    new = NewSession(**{"agent_id": "echo", **fields})  # type: ignore[arg-type]
    return (await store.create_session(owner, new)).session_id


async def found(store: Store, **search: object) -> tuple[list[str], int]:
    result = await store.search_sessions(OWNER, SessionSearch(**search))  # type: ignore[arg-type]
    return [s.session_id for s in result.items], result.total


async def test_a_numbered_page_is_a_slice_of_all_matches_with_their_exact_total(
    store: Store,
) -> None:
    sids = [await create(store) for _ in range(7)]
    await create(store, OTHER)

    assert await found(store, offset=3, limit=3) == (sids[::-1][3:6], 7)
    assert await found(store, offset=6, limit=3) == (sids[::-1][6:], 7)
    assert await found(store, offset=9, limit=3) == ([], 7)


async def test_filters_count_only_the_sessions_they_match(store: Store) -> None:
    wanted = await create(store, title="Trip to Kyoto", user_id="u1")
    await create(store, title="Trip to Lima", user_id="u2")
    await create(store, title="groceries", user_id="u1")
    await create(store, agent_id="default", title="a trip", user_id="u1")

    assert await found(store, agent_id="echo", user_id="u1", title_contains="TRIP") == (
        [wanted],
        1,
    )
    assert (await found(store, title_contains="trip"))[1] == 3


async def test_sessions_sort_by_title_ignoring_case_or_by_last_update(store: Store) -> None:
    bravo = await create(store, title="bravo")
    alpha = await create(store, title="Alpha")
    untitled = await create(store)
    await store.update_session(OWNER, bravo, SessionPatch(title="Bravo"))

    assert await found(store, sort="title", descending=False) == ([untitled, alpha, bravo], 3)
    assert (await found(store, sort="updated"))[0] == [bravo, untitled, alpha]


async def test_a_sessions_state_reads_back_and_is_replaced_or_removed_by_a_patch(
    store: Store,
) -> None:
    sid = await create(store, state={"cart": [1, 2], "step": {"n": 1}})
    assert (await store.get_session(OWNER, sid)).state == {"cart": [1, 2], "step": {"n": 1}}

    await store.update_session(OWNER, sid, SessionPatch(title="kept state"))
    assert (await store.get_session(OWNER, sid)).state == {"cart": [1, 2], "step": {"n": 1}}

    await store.update_session(OWNER, sid, SessionPatch(state={"step": 2}))
    assert (await store.get_session(OWNER, sid)).state == {"step": 2}

    await store.update_session(OWNER, sid, SessionPatch(state=None))
    assert (await store.get_session(OWNER, sid)).state is None


async def test_a_running_exchange_is_found_by_its_id_among_the_owners_sessions(
    store: Store,
) -> None:
    sids = [await create(store) for _ in range(3)]
    await begin(store, sids[0], "x-running")

    assert await store.running_session_of(OWNER, "x-running") == sids[0]
    assert await store.running_session_of(OWNER, "x-other") is None
    assert await store.running_session_of(OTHER, "x-running") is None
