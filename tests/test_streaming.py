"""streamingContinue and blockingContinue on a real server, read as a browser reads SSE."""

from __future__ import annotations

import asyncio
import itertools

import httpx

from tests.support.native import (
    assert_error,
    blocking_continue,
    continue_body,
    create_session,
    expected_reply,
    get_session,
    list_exchanges,
    stream_id_key,
    stream_reply,
    streaming,
    wait_for,
    words,
)
from tests.support.servers import ServerFactory


async def test_streamed_text_equals_done_equals_stored_equals_the_synthetic_reply(
    client: httpx.AsyncClient,
) -> None:
    session = await create_session(client, agentId="echo")
    text = words(30)

    reply = await stream_reply(client, session["conversationId"], text)

    [stored] = await list_exchanges(client, session["conversationId"])
    assert reply.text == reply.done["response"]["text"]
    assert reply.done["response"]["text"] == stored["response"]["text"]
    assert stored["response"]["text"] == expected_reply("echo", text)
    assert reply.done == stored
    assert stored["status"] == "completed"
    assert stored["finishReason"] == "stop"


async def test_the_default_agent_streams_its_deterministic_lorem_reply(
    client: httpx.AsyncClient,
) -> None:
    session = await create_session(client)
    assert session["agentId"] == "default"

    reply = await stream_reply(client, session["conversationId"], "Tell me something.")

    assert reply.text == expected_reply("default", "Tell me something.")
    assert reply.done["response"]["text"] == reply.text


async def test_delta_seq_and_event_ids_strictly_increase(client: httpx.AsyncClient) -> None:
    session = await create_session(client, agentId="echo", refreshIntervalMs=50)

    reply = await stream_reply(client, session["conversationId"], words(25))

    seqs = [delta["seq"] for delta in reply.delta_data]
    assert len(seqs) >= 3
    assert seqs == list(range(1, len(seqs) + 1))
    ids = [stream_id_key(event.id) for event in [*reply.deltas, reply.of("done")[0]]]
    assert all(earlier < later for earlier, later in itertools.pairwise(ids))


async def test_a_stream_opens_with_retry_and_started_and_ends_with_done(
    client: httpx.AsyncClient,
) -> None:
    session = await create_session(client, agentId="echo")
    sid = session["conversationId"]

    reply = await stream_reply(client, sid, words(5))

    first, second, *_ = reply.events
    assert first.retry is not None and first.retry > 0
    assert second.event == "started"
    assert second.json() == {"exchangeId": reply.done["exchangeId"], "conversationId": sid}
    kinds = [event.event for event in reply.events if event.dispatched]
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"delta"}
    assert reply.response.headers["x-request-id"]
    assert reply.response.headers["cache-control"].startswith("no-cache")


async def test_an_idle_stream_carries_comment_keepalives(server_factory: ServerFactory) -> None:
    server = server_factory({"PARLEY_KEEPALIVE_SECONDS": "0.2"})
    async with server.client() as http:
        session = await create_session(http, agentId="echo", refreshIntervalMs=1000)
        # The first token goes out at once; the rest waits a whole second for its interval.
        reply = await stream_reply(http, session["conversationId"], words(3))

    pings = [event for event in reply.events if event.is_comment_only and event.comments]
    assert len(pings) >= 3
    assert all(event.comments == ("ping",) for event in pings)
    assert reply.text == expected_reply("echo", words(3))


async def test_a_client_message_id_becomes_the_exchange_id(client: httpx.AsyncClient) -> None:
    session = await create_session(client, agentId="echo")

    reply = await stream_reply(client, session["conversationId"], "hi", messageId="msg-0001")

    assert reply.started.json()["exchangeId"] == "msg-0001"
    assert reply.done["exchangeId"] == "msg-0001"


async def test_blocking_continue_returns_exactly_what_the_history_shows(
    client: httpx.AsyncClient,
) -> None:
    session = await create_session(client, agentId="echo")
    sid = session["conversationId"]

    first = await blocking_continue(client, sid, words(8, "a"))
    second = await blocking_continue(client, sid, words(4, "b"))

    assert await list_exchanges(client, sid) == [first, second]
    assert first["response"]["text"] == expected_reply("echo", words(8, "a"))
    assert first["status"] == second["status"] == "completed"
    assert (await get_session(client, sid))["messageCount"] == 2


async def test_history_pages_oldest_first_without_gaps(client: httpx.AsyncClient) -> None:
    session = await create_session(client, agentId="echo")
    sid = session["conversationId"]
    sent = [await blocking_continue(client, sid, f"turn {n}") for n in range(5)]

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/v1/sessions/{sid}/exchanges", params=params)).json()
        pages.append([exchange["exchangeId"] for exchange in page["data"]])
        cursor = page["nextCursor"]
        if cursor is None:
            break

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [xid for page in pages for xid in page] == [x["exchangeId"] for x in sent]


async def test_a_second_continue_on_a_busy_session_gets_409_and_the_first_runs_on(
    client: httpx.AsyncClient,
) -> None:
    session = await create_session(client, agentId="echo")
    sid = session["conversationId"]
    text = words(60)

    async with streaming(client, sid, text) as flight:
        await flight.next_event("delta")
        blocking = await client.post(
            f"/v1/sessions/{sid}/blockingContinue", json=continue_body("me too")
        )
        streamed = await client.post(
            f"/v1/sessions/{sid}/streamingContinue", json=continue_body("me three")
        )
        during = await get_session(client, sid)
        done = (await flight.next_event("done")).json()

    assert_error(blocking, 409, "session_busy")
    assert_error(streamed, 409, "session_busy")
    assert during["status"] == "running"
    assert done["status"] == "completed"
    assert done["response"]["text"] == expected_reply("echo", text)
    assert await list_exchanges(client, sid) == [done]
    assert (await get_session(client, sid))["messageCount"] == 1


async def test_a_client_that_disconnects_mid_stream_still_gets_its_exchange_stored(
    client: httpx.AsyncClient,
) -> None:
    session = await create_session(client, agentId="echo")
    sid = session["conversationId"]
    text = words(50)

    async with streaming(client, sid, text) as flight:
        await flight.next_event("delta")
    # The connection is closed now, a second into a two-second reply.
    [running] = await list_exchanges(client, sid)
    assert running["status"] == "running"

    async def completed() -> dict[str, object] | None:
        [exchange] = await list_exchanges(client, sid)
        return exchange if exchange["status"] == "completed" else None

    exchange = await wait_for(completed, 10, "the exchange to complete")
    assert exchange["exchangeId"] == flight.exchange_id
    assert exchange["response"]["text"] == expected_reply("echo", text)
    assert exchange["usage"]["outputTokens"] == 50
    assert (await get_session(client, sid))["status"] == "idle"


async def test_two_sessions_stream_at_once_without_mixing_their_text(
    client: httpx.AsyncClient,
) -> None:
    one = await create_session(client, agentId="echo")
    two = await create_session(client, agentId="echo")

    first, second = await asyncio.gather(
        stream_reply(client, one["conversationId"], words(20, "one")),
        stream_reply(client, two["conversationId"], words(20, "two")),
    )

    assert first.text == expected_reply("echo", words(20, "one"))
    assert second.text == expected_reply("echo", words(20, "two"))
