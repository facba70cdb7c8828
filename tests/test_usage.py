"""Token usage: moving with every delta, exact at the end, summed on the session."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx

from streams.tokens import count_tokens
from tests.support.native import (
    blocking_continue,
    create_session,
    expected_reply,
    get_session,
    list_exchanges,
    record,
    stream_reply,
    streaming,
    words,
)
from tests.support.servers import ServerProcess

PARTS = ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheCreationInputTokens")


def _is_totalled(usage: dict[str, int]) -> bool:
    return usage["totalTokens"] == sum(usage[part] for part in PARTS)


async def test_usage_grows_monotonically_across_deltas(client: httpx.AsyncClient) -> None:
    session = await create_session(client, agentId="echo", refreshIntervalMs=50)

    reply = await stream_reply(client, session["conversationId"], words(40))

    usages = [delta["usage"] for delta in reply.delta_data]
    outputs = [usage["outputTokens"] for usage in usages]
    record("usage-across-deltas@50ms", deltas=len(usages), outputTokens=outputs)
    assert len(usages) >= 5
    for earlier, later in itertools.pairwise(usages):
        assert all(later[field] >= earlier[field] for field in [*PARTS, "totalTokens"])
    assert all(earlier < later for earlier, later in itertools.pairwise(outputs))
    assert all(_is_totalled(usage) for usage in usages)


async def test_each_delta_counts_the_output_tokens_streamed_so_far(
    client: httpx.AsyncClient,
) -> None:
    session = await create_session(client, agentId="echo", refreshIntervalMs=100)

    reply = await stream_reply(client, session["conversationId"], words(30))

    text = ""
    for delta in reply.delta_data:
        text += delta["text"]
        assert delta["usage"]["outputTokens"] == count_tokens(text)


async def test_the_final_usage_equals_the_stored_exchange_usage(
    client: httpx.AsyncClient,
) -> None:
    session = await create_session(client, agentId="echo")
    text = "Count these words, and the comma too!"
    sid = session["conversationId"]

    reply = await stream_reply(client, sid, text)

    [stored] = await list_exchanges(client, sid)
    final = reply.done["usage"]
    record("final-usage", **final)
    assert final == stored["usage"]
    assert final == reply.delta_data[-1]["usage"]
    assert final["inputTokens"] == count_tokens(text)
    assert final["outputTokens"] == count_tokens(expected_reply("echo", text))
    assert _is_totalled(final)
    assert (await get_session(client, sid))["usage"] == final


async def test_the_session_totals_equal_the_sum_over_its_exchanges(
    client: httpx.AsyncClient,
) -> None:
    session = await create_session(client, agentId="echo")
    sid = session["conversationId"]
    await blocking_continue(client, sid, words(8, "a"))
    await stream_reply(client, sid, words(4, "b"))
    await blocking_continue(client, sid, words(6, "c"))

    exchanges = await list_exchanges(client, sid)
    totals = (await get_session(client, sid))["usage"]

    summed = {field: sum(x["usage"][field] for x in exchanges) for field in [*PARTS, "totalTokens"]}
    record("session-totals", exchanges=len(exchanges), **totals)
    assert totals == summed
    # Each turn's input is the history so far plus the new text, counted by one tokenizer.
    assert [x["usage"]["inputTokens"] for x in exchanges] == [8, 8 + 8 + 4, 8 + 8 + 4 + 4 + 6]
    assert [x["usage"]["outputTokens"] for x in exchanges] == [8, 4, 6]


async def test_a_get_from_a_second_connection_during_a_long_stream_shows_output_rising(
    client: httpx.AsyncClient, shared_server: ServerProcess
) -> None:
    session = await create_session(client, agentId="echo", refreshIntervalMs=100)
    sid = session["conversationId"]
    seen: list[dict[str, Any]] = []

    async with shared_server.client() as second, streaming(client, sid, words(100)) as flight:
        done_event = asyncio.create_task(flight.next_event("done"))
        while not done_event.done():
            seen.append(await get_session(second, sid))
            await asyncio.sleep(0.15)
        done = (await done_event).json()
        after = await get_session(second, sid)

    outputs = [s["usage"]["outputTokens"] for s in seen if s["status"] == "running"]
    record("output-tokens-seen-by-GET", polls=len(outputs), outputTokens=outputs)
    assert all(earlier <= later for earlier, later in itertools.pairwise(outputs))
    assert len({value for value in outputs if 0 < value < 100}) >= 5
    assert done["usage"]["outputTokens"] == 100
    assert after["usage"] == done["usage"]
    assert after["status"] == "idle"
