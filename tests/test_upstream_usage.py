"""Usage through a real upstream: rising while the reply streams, exact at the end, and session
totals that stay the sum of the exchanges."""

from __future__ import annotations

from typing import Any, cast

import httpx
from redis.asyncio import Redis

from streams.keys import Keys
from streams.records import exchange_from, usage_from
from streams.types import Usage
from tests.support.agents import agent_session, ask_streaming, usage_sum
from tests.support.native import blocking_continue, get_session, list_exchanges
from tests.support.servers import ServerProcess
from tests.support.upstream import Reply, UpstreamServer

SLOW_REPLY = [f" t{i}" for i in range(16)]  # one token each


def usage(inp: int, out: int, read: int = 0, write: int = 0) -> dict[str, int]:
    return {
        "inputTokens": inp,
        "outputTokens": out,
        "cacheReadInputTokens": read,
        "cacheCreationInputTokens": write,
        "totalTokens": inp + out + read + write,
    }


async def stream_usages(
    client: httpx.AsyncClient, sid: str, text: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The usage of every delta, and the final event's exchange."""
    _, events = await ask_streaming(client, sid, text)
    deltas = [e.json()["usage"] for e in events if e.event == "delta"]
    assert events[-1].event == "done", events[-1]
    final: dict[str, Any] = events[-1].json()
    return deltas, final


async def test_deltas_carry_rising_usage_with_the_input_known_from_the_start(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, "anthropic")
    upstream.queue(Reply(pieces=SLOW_REPLY, token_delay=0.04, input_tokens=100, output_tokens=20))

    deltas, final = await stream_usages(http, sid, "count with me")

    outputs = [d["outputTokens"] for d in deltas]
    assert len(deltas) >= 4
    assert all(d["inputTokens"] == 100 for d in deltas)
    assert outputs == sorted(outputs) and outputs[0] < outputs[-1]
    assert final["usage"] == usage(100, 20)


async def test_openai_output_is_estimated_while_streaming_then_exact(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, "openai")
    upstream.queue(Reply(pieces=SLOW_REPLY, token_delay=0.04, input_tokens=30, output_tokens=23))

    deltas, final = await stream_usages(http, sid, "count with me")

    outputs = [d["outputTokens"] for d in deltas]
    assert outputs == sorted(outputs)
    assert 0 < outputs[0] < 23 and outputs[-1] <= 23  # estimates until the report lands
    assert final["usage"] == usage(30, 23)


async def test_openai_cached_prompt_tokens_are_counted_apart_from_input(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, "openai")
    upstream.queue(Reply(input_tokens=30, cached_tokens=70, output_tokens=9))

    exchange = await blocking_continue(http, sid, "hello")

    assert exchange["usage"] == usage(30, 9, read=70)


async def test_anthropic_cache_reads_and_writes_are_exact(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, "anthropic")
    upstream.queue(
        Reply(
            input_tokens=5,
            cached_tokens=40,
            cache_creation_5m=7,
            cache_creation_1h=3,
            output_tokens=11,
        )
    )

    exchange = await blocking_continue(http, sid, "hello")

    assert exchange["usage"] == usage(5, 11, read=40, write=10)


def cache_writes(usage: Usage) -> tuple[int, int, int]:
    """Cache writes as (total, 5-minute, 1-hour)."""
    return (
        usage.cache_creation_input_tokens,
        usage.cache_creation_5m_input_tokens,
        usage.cache_creation_1h_input_tokens,
    )


async def test_anthropic_cache_writes_keep_their_ttl_split_on_the_exchange_and_session(
    http: httpx.AsyncClient, upstream: UpstreamServer, parley: ServerProcess, redis_client: Redis
) -> None:
    sid = await agent_session(http, "anthropic")
    upstream.queue(
        Reply(input_tokens=5, cache_creation_5m=7, cache_creation_1h=3, output_tokens=11),
        Reply(input_tokens=2, cache_creation_5m=1, cache_creation_1h=9, output_tokens=4),
    )

    first = await blocking_continue(http, sid, "hello")
    await blocking_continue(http, sid, "again")

    keys = Keys(parley.key_prefix)
    record = await redis_client.hgetall(keys.exchange(sid, first["exchangeId"]))
    exchange = exchange_from(sid, cast(dict[str, str], record))
    assert cache_writes(exchange.usage) == (10, 7, 3)
    assert exchange.usage.total_tokens == 5 + 11 + 10
    session = usage_from(cast(dict[str, str], await redis_client.hgetall(keys.session(sid))))
    assert cache_writes(session) == (20, 8, 12)
    assert session.total_tokens == 5 + 11 + 10 + 2 + 4 + 10
    assert first["usage"]["cacheCreationInputTokens"] == 10  # the native wire shows the total


async def test_the_upstream_report_wins_even_below_the_estimate(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, "openai")
    upstream.queue(Reply(pieces=SLOW_REPLY, token_delay=0.02, input_tokens=8, output_tokens=3))

    deltas, final = await stream_usages(http, sid, "hello")

    assert max(d["outputTokens"] for d in deltas) > 3
    assert final["usage"] == usage(8, 3)
    assert (await get_session(http, sid))["usage"] == usage(8, 3)


async def test_session_totals_stay_the_sum_over_exchanges(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, "anthropic")
    upstream.queue(
        Reply(pieces=SLOW_REPLY, token_delay=0.01, input_tokens=50, output_tokens=40),
        Reply(input_tokens=7, cached_tokens=50, cache_creation_1h=9, output_tokens=2),
        Reply(pieces=SLOW_REPLY, drop_after=5, input_tokens=60),
        Reply(input_tokens=3, output_tokens=1),
    )

    for text in ("one", "two", "three", "four"):
        await blocking_continue(http, sid, text)

    stored = await list_exchanges(http, sid)
    assert [x["status"] for x in stored] == ["completed", "completed", "failed", "completed"]
    assert (await get_session(http, sid))["usage"] == usage_sum(stored)
