"""Listing sessions: paging, sorting and filtering, also while other sessions are being created.

Every test lists as a principal of its own (one API key each), so it sees only its sessions.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.support.native import (
    assert_error,
    blocking_continue,
    create_session,
    own_server,
    streaming,
    words,
)
from tests.support.servers import ServerProcess

KEYS = [f"pager-key-{n}" for n in range(40)]
_next_key = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServerProcess]:
    env = {"PARLEY_API_KEYS": ",".join(f"{key}=owner-{key}" for key in KEYS)}
    with own_server(tmp_path_factory.mktemp("paging-server"), redis_url, env) as started:
        yield started


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    """A client acting as a principal no other test uses."""
    key = KEYS[next(_next_key)]
    async with server.client(headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


async def _all_pages(
    http: httpx.AsyncClient, pause: float = 0.0, **params: Any
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await http.get("/v1/sessions", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["data"])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages
        await asyncio.sleep(pause)


def _ids(pages: list[list[dict[str, Any]]]) -> list[str]:
    return [session["conversationId"] for page in pages for session in page]


async def _create_many(http: httpx.AsyncClient, count: int, **fields: Any) -> list[str]:
    """Sessions created a few ms apart, so creation order is also createdAt order."""
    made: list[str] = []
    for _ in range(count):
        made.append((await create_session(http, **fields))["conversationId"])
        await asyncio.sleep(0.003)
    return made


async def _keep_creating(http: httpx.AsyncClient, made: list[str], stop: asyncio.Event) -> None:
    while not stop.is_set():
        made.append((await create_session(http, title="newcomer"))["conversationId"])
        await asyncio.sleep(0.01)


async def _paged_while_creating(
    http: httpx.AsyncClient, server: ServerProcess, **params: Any
) -> tuple[list[list[dict[str, Any]]], list[str]]:
    """Page through with pauses while a second connection keeps creating sessions."""
    newcomers: list[str] = []
    stop = asyncio.Event()
    headers = {"Authorization": http.headers["Authorization"]}
    async with server.client(headers=headers) as other:
        creator = asyncio.create_task(_keep_creating(other, newcomers, stop))
        await asyncio.sleep(0.05)
        pages = await _all_pages(http, pause=0.03, **params)
        stop.set()
        await creator
    return pages, newcomers


async def test_newest_first_pages_show_every_session_once_while_others_are_created(
    http: httpx.AsyncClient, server: ServerProcess
) -> None:
    existing = await _create_many(http, 25)

    pages, newcomers = await _paged_while_creating(
        http, server, limit=4, sort="createdAt", order="desc"
    )

    seen = _ids(pages)
    assert len(newcomers) >= 3
    assert len(pages) >= 7
    assert len(seen) == len(set(seen)), "a session was repeated"
    assert set(existing) <= set(seen), "a session was skipped"
    assert seen[-len(existing) :] == existing[::-1]
    created = [session["createdAt"] for page in pages for session in page]
    assert created == sorted(created, reverse=True)


async def test_oldest_first_pages_show_every_session_once_while_others_are_created(
    http: httpx.AsyncClient, server: ServerProcess
) -> None:
    existing = await _create_many(http, 25)

    pages, newcomers = await _paged_while_creating(
        http, server, limit=4, sort="createdAt", order="asc"
    )

    seen = _ids(pages)
    assert len(seen) == len(set(seen)), "a session was repeated"
    assert seen[: len(existing)] == existing, "a session was skipped or out of order"
    # Sessions created behind the cursor show up on later pages, in order.
    assert seen[len(existing) :] == newcomers[: len(seen) - len(existing)]


async def test_the_default_page_holds_20_and_the_last_page_has_no_cursor(
    http: httpx.AsyncClient,
) -> None:
    await _create_many(http, 23)

    pages = await _all_pages(http)

    assert [len(page) for page in pages] == [20, 3]


async def test_sorting_by_updated_at_puts_the_latest_exchange_first(
    http: httpx.AsyncClient,
) -> None:
    oldest, middle, newest = await _create_many(http, 3, agentId="echo")
    await blocking_continue(http, oldest, "wake up")

    by_update = _ids(await _all_pages(http, sort="updatedAt", order="desc"))
    by_creation = _ids(await _all_pages(http, sort="createdAt", order="desc"))
    by_update_asc = _ids(await _all_pages(http, sort="updatedAt", order="asc"))

    assert by_update == [oldest, newest, middle]
    assert by_creation == [newest, middle, oldest]
    assert by_update_asc == [middle, newest, oldest]


async def test_filtering_by_agent_spans_several_pages(http: httpx.AsyncClient) -> None:
    echoes = await _create_many(http, 7, agentId="echo")
    await _create_many(http, 6, agentId="default")

    pages = await _all_pages(http, agentId="echo", limit=3, order="asc")

    assert [len(page) for page in pages] == [3, 3, 1]
    assert _ids(pages) == echoes


async def test_filtering_by_title_matches_a_part_of_it_in_any_case(
    http: httpx.AsyncClient,
) -> None:
    wanted = [(await _create_many(http, 1, title=f"Trip to Lisbon #{n}"))[0] for n in range(5)]
    await _create_many(http, 4, title="Groceries")
    await _create_many(http, 2)

    pages = await _all_pages(http, q="lisbon", limit=2, order="asc")

    assert _ids(pages) == wanted


async def test_filtering_by_status_finds_the_running_session(http: httpx.AsyncClient) -> None:
    busy, *idle = await _create_many(http, 4, agentId="echo")

    async with streaming(http, busy, words(40)) as flight:
        await flight.next_event("delta")
        running = _ids(await _all_pages(http, status="running"))
        resting = _ids(await _all_pages(http, status="idle", order="asc"))
        await flight.next_event("done")

    assert running == [busy]
    assert resting == idle


async def test_a_cursor_is_a_position_in_the_order_asked(http: httpx.AsyncClient) -> None:
    first, second, _ = await _create_many(http, 3)
    ascending = (await http.get("/v1/sessions", params={"limit": 2, "order": "asc"})).json()

    response = await http.get(
        "/v1/sessions", params={"order": "desc", "cursor": ascending["nextCursor"]}
    )

    assert _ids([response.json()["data"]])[0] == first
    assert ascending["nextCursor"].endswith(f".{second}")


async def test_a_cursor_that_is_not_one_names_the_rule_and_the_value(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/v1/sessions", params={"cursor": "page-2"})

    error = assert_error(response, 400)
    assert error["message"] == (
        "cursor must be a nextCursor this server gave (<number>.<id>), got 'page-2'"
    )


async def test_an_empty_cursor_is_the_first_page(http: httpx.AsyncClient) -> None:
    made = await _create_many(http, 2)

    response = await http.get("/v1/sessions", params={"cursor": ""})

    assert _ids([response.json()["data"]])[:2] == made[::-1]
