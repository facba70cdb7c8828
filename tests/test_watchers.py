"""Several watchers of one exchange, e.g. two tabs, receive identical deltas."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.native import (
    Received,
    assert_ordered_once,
    connect,
    continue_body,
    create_sid,
    expected_reply,
    sessions_url,
    words,
)


async def test_three_watchers_and_the_origin_receive_identical_deltas(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    text = words(80)
    origin = Received()
    watchers = [Received() for _ in range(3)]
    async with (
        connect(
            client, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
        ) as stream,
        connect(client, "GET", sessions_url(sid, "/stream")) as early_a,
        connect(client, "GET", sessions_url(sid, "/stream")) as early_b,
    ):
        readers = [
            asyncio.create_task(early_a.read(watchers[0])),
            asyncio.create_task(early_b.read(watchers[1])),
        ]
        await stream.read(origin, limit=10)
        async with connect(client, "GET", sessions_url(sid, "/stream")) as late:
            readers.append(asyncio.create_task(late.read(watchers[2])))
            await stream.read(origin)
            await asyncio.wait_for(asyncio.gather(*readers), 15)

    expected = expected_reply("echo", text)
    seen = [(e.id, e.event, e.data) for e in origin.items]
    assert origin.text == expected
    assert_ordered_once(origin.items)
    for watcher in watchers:
        assert [(e.id, e.event, e.data) for e in watcher.items] == seen
        assert watcher.text == expected


async def test_a_watcher_that_leaves_does_not_disturb_the_others(
    client: httpx.AsyncClient,
) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    text = words(50)
    origin, leaver, stayer = Received(), Received(), Received()
    async with (
        connect(
            client, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
        ) as stream,
        connect(client, "GET", sessions_url(sid, "/stream")) as staying,
    ):
        reader = asyncio.create_task(staying.read(stayer))
        async with connect(client, "GET", sessions_url(sid, "/stream")) as leaving:
            await leaving.read(leaver, limit=3)
        await stream.read(origin)
        await asyncio.wait_for(reader, 15)

    assert [(e.id, e.data) for e in stayer.items] == [(e.id, e.data) for e in origin.items]
    assert stayer.text == origin.text == expected_reply("echo", text)
    assert [(e.id, e.data) for e in leaver.items] == [(e.id, e.data) for e in origin.items[:3]]
