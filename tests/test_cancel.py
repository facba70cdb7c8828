"""POST /v1/sessions/{id}/cancel and `onDisconnect`: partial text and usage are kept."""

from __future__ import annotations

import asyncio

import httpx

from streams.tokens import count_tokens
from tests.support.native import (
    Received,
    assert_cancelled_with_partial_text,
    connect,
    continue_body,
    create_sid,
    expected_reply,
    list_exchanges,
    sessions_url,
    wait_for,
    wait_until_idle,
    words,
)


async def test_cancel_stops_the_stream_and_keeps_the_partial_text_and_usage(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    text = words(200)
    received = Received()
    async with connect(
        client, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
    ) as stream:
        await stream.read(received, limit=3)
        cancel = await client.post(sessions_url(sid, "/cancel"), json={})
        await stream.read(received)

    assert cancel.status_code == 200, cancel.text
    done = received.exchange()
    assert_cancelled_with_partial_text(done, received, expected_reply("echo", text))
    assert cancel.json() == done
    assert (await list_exchanges(client, sid))[-1] == done
    session = (await client.get(sessions_url(sid))).json()
    assert session["status"] == "idle"
    assert session["usage"] == done["usage"]


async def test_cancel_by_message_id_cancels_that_exchange(client: httpx.AsyncClient) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    text = words(200)
    received = Received()
    async with connect(
        client,
        "POST",
        sessions_url(sid, "/streamingContinue"),
        json_body=continue_body(text, messageId="turn-1"),
    ) as stream:
        await stream.read(received, limit=2)
        cancel = await client.post(sessions_url(sid, "/cancel"), json={"messageId": "turn-1"})
        await stream.read(received)

    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["exchangeId"] == "turn-1"
    assert_cancelled_with_partial_text(received.exchange(), received, expected_reply("echo", text))


async def test_cancel_with_an_unknown_message_id_is_409_and_the_exchange_runs_on(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    text = words(30)
    received = Received()
    async with connect(
        client, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
    ) as stream:
        await stream.read(received, limit=1)
        cancel = await client.post(sessions_url(sid, "/cancel"), json={"messageId": "not-this-one"})
        await stream.read(received)

    assert cancel.status_code == 409
    assert cancel.json()["error"]["code"] == "not_running"
    done = received.exchange()
    assert done["status"] == "completed"
    assert done["response"]["text"] == received.text == expected_reply("echo", text)


async def test_cancel_twice_in_a_row_answers_409_the_second_time(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    received = Received()
    async with connect(
        client,
        "POST",
        sessions_url(sid, "/streamingContinue"),
        json_body=continue_body(words(200)),
    ) as stream:
        await stream.read(received, limit=1)
        first = await client.post(sessions_url(sid, "/cancel"), json={})
        second = await client.post(sessions_url(sid, "/cancel"), json={})
        await stream.read(received)

    assert first.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "not_running"
    assert [e.event for e in received.blocks].count("done") == 1


async def test_cancel_with_nothing_running_is_409(client: httpx.AsyncClient) -> None:
    sid = await create_sid(client)

    response = await client.post(sessions_url(sid, "/cancel"), json={})

    assert response.status_code == 409
    body = response.json()
    assert body["error"]["code"] == "not_running"
    assert body["error"]["message"]
    assert response.headers["x-request-id"] == body["requestId"]


async def test_cancel_without_a_body_cancels_the_running_exchange(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    received = Received()
    async with connect(
        client,
        "POST",
        sessions_url(sid, "/streamingContinue"),
        json_body=continue_body(words(200)),
    ) as stream:
        await stream.read(received, limit=1)
        cancel = await client.post(sessions_url(sid, "/cancel"))
        await stream.read(received)

    assert cancel.status_code == 200, cancel.text
    assert received.exchange()["status"] == "cancelled"


async def test_every_watcher_receives_the_cancelled_end_event(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    origin, watcher = Received(), Received()
    async with (
        connect(
            client,
            "POST",
            sessions_url(sid, "/streamingContinue"),
            json_body=continue_body(words(200)),
        ) as stream,
        connect(client, "GET", sessions_url(sid, "/stream")) as join,
    ):
        reader = asyncio.create_task(join.read(watcher))
        await stream.read(origin, limit=3)
        await client.post(sessions_url(sid, "/cancel"), json={})
        await stream.read(origin)
        await asyncio.wait_for(reader, 10)

    assert watcher.exchange() == origin.exchange()
    assert watcher.exchange()["status"] == "cancelled"
    assert watcher.text == origin.text == origin.exchange()["response"]["text"]


async def test_a_cancelled_session_takes_the_next_turn(client: httpx.AsyncClient) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    received = Received()
    async with connect(
        client,
        "POST",
        sessions_url(sid, "/streamingContinue"),
        json_body=continue_body(words(200)),
    ) as stream:
        await stream.read(received, limit=1)
        await client.post(sessions_url(sid, "/cancel"), json={})

    reply = await client.post(sessions_url(sid, "/blockingContinue"), json=continue_body("again"))

    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "completed"
    assert reply.json()["response"]["text"] == expected_reply("echo", "again")


async def test_on_disconnect_cancel_cancels_when_the_client_closes_its_stream(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    text = words(200)
    received = Received()
    async with connect(
        client,
        "POST",
        sessions_url(sid, "/streamingContinue"),
        json_body=continue_body(text, onDisconnect="cancel"),
    ) as stream:
        await stream.read(received, limit=3)

    stored = await wait_until_idle(client, sid, timeout=5)

    assert stored["status"] == "cancelled"
    assert received.text and stored["response"]["text"].startswith(received.text)
    assert len(stored["response"]["text"]) < len(expected_reply("echo", text))
    assert stored["usage"]["outputTokens"] == count_tokens(stored["response"]["text"])


async def test_by_default_closing_the_stream_does_not_cancel(client: httpx.AsyncClient) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    text = words(40)
    received = Received()
    async with connect(
        client, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
    ) as stream:
        await stream.read(received, limit=2)

    stored = await wait_until_idle(client, sid)

    assert stored["status"] == "completed"
    assert stored["response"]["text"] == expected_reply("echo", text)


async def test_on_disconnect_continue_keeps_generating_after_the_client_leaves(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    text = words(40)
    async with connect(
        client,
        "POST",
        sessions_url(sid, "/streamingContinue"),
        json_body=continue_body(text, onDisconnect="continue"),
    ) as stream:
        await stream.read(Received(), limit=1)

    stored = await wait_until_idle(client, sid)

    assert stored["status"] == "completed"
    assert stored["response"]["text"] == expected_reply("echo", text)


async def test_on_disconnect_cancel_does_not_fire_when_the_stream_ends_normally(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    received = Received()
    async with connect(
        client,
        "POST",
        sessions_url(sid, "/streamingContinue"),
        json_body=continue_body("short one", onDisconnect="cancel"),
    ) as stream:
        await stream.read(received)

    assert received.exchange()["status"] == "completed"
    assert (await list_exchanges(client, sid))[-1]["status"] == "completed"


async def test_cancel_during_the_first_token_wait_ends_with_empty_text(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client)
    received = Received()
    async with connect(
        client,
        "POST",
        sessions_url(sid, "/streamingContinue"),
        json_body=continue_body("Take your time."),
    ) as stream:
        await stream.read(received, until=lambda block: block.event == "started")
        cancel = await client.post(sessions_url(sid, "/cancel"), json={})
        await stream.read(received)

    assert cancel.status_code == 200, cancel.text
    done = received.exchange()
    assert received.deltas == []
    assert (done["status"], done["response"]["text"]) == ("cancelled", "")
    assert done["usage"]["outputTokens"] == 0
    assert done["usage"]["inputTokens"] > 0


async def test_on_disconnect_cancel_before_the_first_delta_cancels(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client)
    async with connect(
        client,
        "POST",
        sessions_url(sid, "/streamingContinue"),
        json_body=continue_body("Never mind.", onDisconnect="cancel"),
    ) as stream:
        await stream.read(Received(), until=lambda block: block.event == "started")

    stored = await wait_until_idle(client, sid, timeout=5)

    assert (stored["status"], stored["response"]["text"]) == ("cancelled", "")


async def test_cancel_answers_a_waiting_blocking_continue_with_the_partial_exchange(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    text = words(200)
    blocking = asyncio.create_task(
        client.post(sessions_url(sid, "/blockingContinue"), json=continue_body(text))
    )

    async def has_output() -> bool:
        session = (await client.get(sessions_url(sid))).json()
        return bool(session["usage"]["outputTokens"] > 0)

    await wait_for(has_output, 10, "the first tokens")
    cancel = await client.post(sessions_url(sid, "/cancel"), json={})
    reply = await asyncio.wait_for(blocking, 10)

    assert cancel.status_code == reply.status_code == 200
    exchange = reply.json()
    assert exchange == cancel.json()
    assert exchange["status"] == "cancelled"
    assert 0 < len(exchange["response"]["text"]) < len(expected_reply("echo", text))
    assert exchange["usage"]["outputTokens"] == count_tokens(exchange["response"]["text"])
