"""Join and resume on GET /v1/sessions/{id}/stream: nothing lost, nothing twice, 204 when idle."""

from __future__ import annotations

import asyncio
import os
import random

import httpx
import pytest
from redis.asyncio import Redis

from tests.support.native import (
    Received,
    assert_ordered_once,
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
from tests.support.servers import ServerProcess
from tests.support.sse import stream_events

DROPS = 50


async def test_fifty_drops_at_random_events_reassemble_the_exact_text(
    client: httpx.AsyncClient, redis_client: Redis, shared_server: ServerProcess
) -> None:
    seed = int(os.environ.get("PARLEY_TEST_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    text = words(500)
    received = Received()
    async with connect(
        client, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
    ) as stream:
        assert stream.status_code == 200
        finished = await stream.read(received, limit=rng.randint(0, 3))
    drops = 1
    while not finished:
        limit = rng.randint(0, 3) if drops < DROPS else None
        async with connect(
            client, "GET", sessions_url(sid, "/stream"), last_event_id=received.last_event_id
        ) as stream:
            assert stream.status_code == 200, (seed, drops, stream.status_code)
            finished = await stream.read(received, limit=limit)
        drops += 0 if finished else 1

    assert drops == DROPS, f"the exchange ended after {drops} drops (seed {seed})"
    assert_ordered_once(received.items)
    done = received.exchange()
    assert received.text == done["response"]["text"] == expected_reply("echo", text), seed
    assert (await list_exchanges(client, sid))[-1] == done
    await _no_subscription_left(redis_client, f"{shared_server.key_prefix}:{{{sid}}}:events")


async def test_a_lost_post_stream_resumes_on_get_with_the_same_ids(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    text = words(30)
    received = Received()
    async with connect(
        client, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
    ) as stream:
        await stream.read(received, limit=2)
    async with connect(
        client, "GET", sessions_url(sid, "/stream"), last_event_id=received.last_event_id
    ) as stream:
        await stream.read(received)

    assert_ordered_once(received.items)
    assert received.text == expected_reply("echo", text)
    whole_log = await _whole_replay_log(client, sid)
    assert [(e.id, e.data) for e in received.items] == [(e.id, e.data) for e in whole_log.items]


async def test_resume_after_a_middle_event_of_a_finished_exchange_replays_the_rest(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    text = words(25)
    _, events = await stream_events(
        client, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
    )
    items = [e for e in events if e.id is not None]
    cut = len(items) // 2

    _, replay = await stream_events(
        client, "GET", sessions_url(sid, "/stream"), last_event_id=items[cut - 1].id
    )

    replayed = [e for e in replay if e.id is not None]
    assert [(e.id, e.data) for e in replayed] == [(e.id, e.data) for e in items[cut:]]
    head = "".join(e.json()["text"] for e in items[:cut])
    tail = "".join(e.json()["text"] for e in replayed if e.event == "delta")
    assert head + tail == expected_reply("echo", text)


async def test_resume_finishes_the_lost_exchange_even_when_a_newer_one_is_running(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    first_text = words(30)
    lost = Received()
    async with connect(
        client,
        "POST",
        sessions_url(sid, "/streamingContinue"),
        json_body=continue_body(first_text, messageId="first"),
    ) as stream:
        await stream.read(lost, limit=2)
    await wait_until_idle(client, sid)
    async with connect(
        client,
        "POST",
        sessions_url(sid, "/streamingContinue"),
        json_body=continue_body(words(200), messageId="second"),
    ) as second:
        await second.read(Received(), limit=1)
        async with connect(
            client, "GET", sessions_url(sid, "/stream"), last_event_id=lost.last_event_id
        ) as stream:
            await stream.read(lost)

    assert lost.exchange()["exchangeId"] == "first"
    assert lost.text == expected_reply("echo", first_text)
    assert_ordered_once(lost.items)


async def test_resume_finishes_the_lost_exchange_even_when_a_newer_one_finished(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    first_text = words(30)
    lost = Received()
    async with connect(
        client,
        "POST",
        sessions_url(sid, "/streamingContinue"),
        json_body=continue_body(first_text, messageId="first"),
    ) as stream:
        await stream.read(lost, limit=2)
    await wait_until_idle(client, sid)
    reply = await client.post(
        sessions_url(sid, "/blockingContinue"), json=continue_body("next", messageId="second")
    )
    assert reply.status_code == 200

    async with connect(
        client, "GET", sessions_url(sid, "/stream"), last_event_id=lost.last_event_id
    ) as stream:
        await stream.read(lost)

    assert lost.exchange()["exchangeId"] == "first"
    assert lost.text == expected_reply("echo", first_text)


async def test_resume_after_the_last_delta_of_a_finished_exchange_sends_only_done(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    _, events = await stream_events(
        client,
        "POST",
        sessions_url(sid, "/streamingContinue"),
        json_body=continue_body(words(10)),
    )
    last_delta = [e for e in events if e.event == "delta"][-1]

    _, replay = await stream_events(
        client, "GET", sessions_url(sid, "/stream"), last_event_id=last_delta.id
    )

    [done] = [e for e in replay if e.id is not None]
    assert (done.event, done.data) == ("done", events[-1].data)


async def test_resume_after_the_end_event_of_a_finished_exchange_answers_204(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    _, events = await stream_events(
        client, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body("hi")
    )
    assert events[-1].event == "done"

    response = await client.get(
        sessions_url(sid, "/stream"), headers={"Last-Event-ID": events[-1].id or ""}
    )

    assert response.status_code == 204
    assert response.content == b""


async def test_stream_answers_204_when_no_exchange_ever_ran(client: httpx.AsyncClient) -> None:
    sid = await create_sid(client)

    response = await client.get(sessions_url(sid, "/stream"))

    assert response.status_code == 204


async def test_stream_with_an_id_but_no_exchange_ever_answers_204(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client)

    response = await client.get(sessions_url(sid, "/stream"), headers={"Last-Event-ID": "1-0"})

    assert response.status_code == 204


async def test_stream_without_last_event_id_answers_204_once_the_exchange_finished(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo")
    reply = await client.post(
        sessions_url(sid, "/blockingContinue"), json=continue_body("done already")
    )
    assert reply.status_code == 200

    response = await client.get(sessions_url(sid, "/stream"))

    assert response.status_code == 204


async def test_join_without_last_event_id_replays_from_the_start_then_goes_live(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    text = words(60)
    origin, joined = Received(), Received()
    async with connect(
        client, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
    ) as stream:
        await stream.read(origin, limit=4)
        async with connect(client, "GET", sessions_url(sid, "/stream")) as join:
            reader = asyncio.create_task(join.read(joined))
            await stream.read(origin)
            await asyncio.wait_for(reader, 10)

    assert joined.deltas[0].json()["seq"] == 1
    assert [(e.id, e.data) for e in joined.items] == [(e.id, e.data) for e in origin.items]
    assert joined.text == expected_reply("echo", text)
    assert_ordered_once(joined.items)


async def test_resume_accepts_the_last_event_id_query_parameter(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    _, events = await stream_events(
        client,
        "POST",
        sessions_url(sid, "/streamingContinue"),
        json_body=continue_body(words(12)),
    )
    items = [e for e in events if e.id is not None]

    _, replay = await stream_events(
        client, "GET", sessions_url(sid, f"/stream?lastEventId={items[0].id}")
    )

    assert [e.id for e in replay if e.id is not None] == [e.id for e in items[1:]]


@pytest.mark.parametrize(
    "bad_id",
    ["nope", "1-", "-1", "1-0-0", "99999999999999999999-0", f"{2**64 - 1}-{2**64 - 1}"],
)
async def test_a_malformed_last_event_id_is_refused_with_400(
    client: httpx.AsyncClient, bad_id: str
) -> None:
    sid = await create_sid(client, agentId="echo")
    reply = await client.post(sessions_url(sid, "/blockingContinue"), json=continue_body("x"))
    assert reply.status_code == 200

    response = await client.get(sessions_url(sid, "/stream"), headers={"Last-Event-ID": bad_id})

    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "Last-Event-ID"


async def test_stream_of_an_unknown_session_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(sessions_url("0" * 32, "/stream"))

    assert response.status_code == 404


async def _whole_replay_log(client: httpx.AsyncClient, sid: str) -> Received:
    """The replay log of the session's last exchange, from its first entry."""
    received = Received()
    async with connect(client, "GET", sessions_url(sid, "/stream"), last_event_id="0-0") as stream:
        assert stream.status_code == 200
        await stream.read(received)
    return received


async def _no_subscription_left(redis: Redis, channel: str) -> None:
    """Every dropped connection released its subscription, so the hub left the channel."""

    async def unsubscribed() -> bool:
        [(_, count)] = await redis.pubsub_numsub(channel)
        return int(count) == 0

    await wait_for(unsubscribed, 5, f"the server to unsubscribe from {channel}")
