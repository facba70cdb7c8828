"""Deltas keep the session's refresh interval, with a leading edge for the first text.

Spacing is checked twice: by when the client received each delta (what a user sees) and by
the delta ids, which are Redis's clock at the moment each delta was written. The echo agent
emits one token every 20 ms after a 50 ms first-token latency, so a reply of N words takes
N/50 s and the interval, not the model, decides when deltas go out.
"""

from __future__ import annotations

import statistics

import httpx

from tests.support.native import (
    ECHO_FIRST_TOKEN_SECONDS,
    Reply,
    create_session,
    expected_reply,
    record,
    stream_reply,
    words,
)

# How much earlier than one interval the client may see a delta after the previous one:
# event-loop and socket jitter on a busy 2-core machine, never the server's throttle.
ARRIVAL_TOLERANCE = 0.02


async def _streamed_at(client: httpx.AsyncClient, interval_ms: int, word_count: int) -> Reply:
    session = await create_session(client, agentId="echo", refreshIntervalMs=interval_ms)
    text = words(word_count)
    reply = await stream_reply(client, session["conversationId"], text, max_seconds=30)
    assert reply.text == expected_reply("echo", text)
    return reply


def _first_delay(reply: Reply) -> float:
    """Seconds from the started event to the first delta, as the client saw them."""
    return reply.deltas[0].received_at - reply.started.received_at


def _assert_spaced(reply: Reply, interval_ms: int, name: str) -> None:
    gaps = reply.arrival_gaps()
    id_gaps = reply.id_gaps_ms()
    record(
        name,
        deltas=len(reply.deltas),
        first_delta_ms=round(_first_delay(reply) * 1000, 1),
        min_gap_ms=round(min(gaps) * 1000, 1),
        mean_gap_ms=round(statistics.mean(gaps) * 1000, 1),
        max_gap_ms=round(max(gaps) * 1000, 1),
        min_id_gap_ms=min(id_gaps),
    )
    interval = interval_ms / 1000
    assert min(gaps) >= interval - ARRIVAL_TOLERANCE, gaps
    assert min(id_gaps) >= interval_ms - 1, id_gaps


async def test_deltas_at_200ms_are_at_least_200ms_apart(client: httpx.AsyncClient) -> None:
    reply = await _streamed_at(client, 200, 60)

    assert len(reply.deltas) >= 6
    _assert_spaced(reply, 200, "spacing@200ms")


async def test_deltas_at_200ms_go_out_as_soon_as_each_interval_is_up(
    client: httpx.AsyncClient,
) -> None:
    reply = await _streamed_at(client, 200, 60)

    # Text is always pending here, so the throttle should not hold it much past the interval.
    middle = reply.arrival_gaps()[:-1]
    assert statistics.median(middle) < 0.2 + 0.05, middle


async def test_the_first_delta_arrives_well_before_one_interval_after_the_first_token(
    client: httpx.AsyncClient,
) -> None:
    reply = await _streamed_at(client, 200, 20)

    first = _first_delay(reply)
    record("first-delta@200ms", first_delta_ms=round(first * 1000, 1))
    assert reply.delta_data[0]["text"] == "w0"
    assert first < ECHO_FIRST_TOKEN_SECONDS + 0.2 / 2


async def test_deltas_at_50ms_are_at_least_50ms_apart(client: httpx.AsyncClient) -> None:
    reply = await _streamed_at(client, 50, 40)

    assert len(reply.deltas) >= 10
    _assert_spaced(reply, 50, "spacing@50ms")
    assert _first_delay(reply) < ECHO_FIRST_TOKEN_SECONDS + 0.05


async def test_deltas_at_5000ms_are_at_least_5000ms_apart(client: httpx.AsyncClient) -> None:
    """A 6 s reply: the first token at once, then one delta per 5 s, the last one included."""
    reply = await _streamed_at(client, 5000, 300)

    _assert_spaced(reply, 5000, "spacing@5000ms")
    assert len(reply.deltas) == 3
    assert _first_delay(reply) < ECHO_FIRST_TOKEN_SECONDS + 0.5
    assert reply.delta_data[0]["text"] == "w0"


async def test_a_patched_interval_applies_to_the_next_exchange(
    client: httpx.AsyncClient,
) -> None:
    session = await create_session(client, agentId="echo", refreshIntervalMs=50)
    sid = session["conversationId"]
    patched = await client.patch(f"/v1/sessions/{sid}", json={"refreshIntervalMs": 300})
    assert patched.json()["refreshIntervalMs"] == 300

    reply = await stream_reply(client, sid, words(40))

    _assert_spaced(reply, 300, "spacing@300ms-patched")
