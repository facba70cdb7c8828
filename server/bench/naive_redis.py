"""The naive-redis baseline: the service a team would write for itself instead of adopting Parley.

Litestar + redis-py asyncio (with hiredis), built the obvious way, at the bare baseline's
path. Each request takes a ``redis.pubsub()`` of its own and subscribes to the conversation's
channel; once Redis confirms the subscription it starts one publisher task for the exchange,
which runs the synthetic model on the bare baseline's schedule (same events, same JSON, same
leading-edge throttle: ``baseline.events``) and PUBLISHes each event, ``done`` last. The
handler streams what the subscription receives through Litestar's ``ServerSentEvent``, then
unsubscribes and closes the pubsub.

What it leaves out is what Parley is for: no replay log, no usage counters in Redis, no
resume (a client that drops loses the rest of the reply), no joining a reply in flight, no
sessions, no auth. Parley's figures divided by these say what those cost over the service a
team would build anyway. Two things such a team meets on its first load test are done as
it would then do them: redis-py's pool (100 connections by default, and a pubsub holds one
for its whole stream) is raised, and the publisher starts only after the SUBSCRIBE is
confirmed, so the first events are not published to nobody. Its model is the bare
baseline's replayed schedule, a sleep per delta, where Parley reads the synthetic backend a
token at a time: that favours this baseline. What the obvious tools cost
is left in: redis-py's pubsub drops its connection on close (a new one to Redis per stream),
and ``ServerSentEvent`` starts each response with a hop through a worker thread.

Run with ``uvicorn server.bench.naive_redis:create_naive_redis_app --factory``; the profile
comes from ``PARLEY_BENCH_NAIVE_REDIS`` (JSON of :class:`NaiveRedisProfile`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import msgspec
from litestar import Litestar, get, post
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from redis.asyncio import Redis

from server.bench.baseline import RETRY_MS, STREAMING_CONTINUE, ContinueBody, Event, events
from streams.backends.synthetic import SyntheticParams

PROFILE_ENV = "PARLEY_BENCH_NAIVE_REDIS"
CHANNEL_PREFIX = "naive-redis:"
_MAX_CONNECTIONS = 10_000


class NaiveRedisProfile(msgspec.Struct, rename="camel", kw_only=True, frozen=True):
    redis_url: str
    params: SyntheticParams = msgspec.field(default_factory=SyntheticParams)
    refresh_interval_ms: int = 100


class Published(msgspec.Struct, frozen=True):
    """One SSE event as it crosses Redis: its data goes through as it was encoded."""

    event: str
    data: msgspec.Raw
    id: str | None = None


_decode = msgspec.json.Decoder(Published).decode


async def publish(redis: Redis, channel: str, exchange: AsyncIterator[Event]) -> None:
    """The exchange's publisher task: every event to the channel, when the model makes it."""
    async for event, data, event_id in exchange:
        await redis.publish(
            channel, msgspec.json.encode(Published(event, msgspec.Raw(data), event_id))
        )


async def relay(
    redis: Redis, conversation_id: str, text: str, profile: NaiveRedisProfile
) -> AsyncIterator[ServerSentEventMessage]:
    """Subscribe, start the publisher, and pass on what arrives until ``done``."""
    channel = CHANNEL_PREFIX + conversation_id
    publisher: asyncio.Task[None] | None = None
    retry: int | None = RETRY_MS
    async with redis.pubsub() as pubsub:
        try:
            await pubsub.subscribe(channel)
            async for message in pubsub.listen():
                if message["type"] == "subscribe" and publisher is None:
                    exchange = events(
                        conversation_id, text, profile.params, profile.refresh_interval_ms
                    )
                    publisher = asyncio.create_task(publish(redis, channel, exchange))
                if message["type"] != "message":
                    continue
                published = _decode(message["data"])
                data = bytes(published.data)
                yield ServerSentEventMessage(
                    data=data, event=published.event, id=published.id, retry=retry
                )
                retry = None
                if published.event == "done":
                    break
        finally:
            if publisher is not None and not publisher.done():
                publisher.cancel()  # the client left: nobody would read the rest
            await pubsub.unsubscribe(channel)


def create_naive_redis_app(profile: NaiveRedisProfile | None = None) -> Litestar:
    """Build the app; without a profile, read it from ``PARLEY_BENCH_NAIVE_REDIS``."""
    if profile is None:
        raw = os.environ.get(PROFILE_ENV)
        if not raw:
            raise RuntimeError(f"the naive-redis baseline needs {PROFILE_ENV} (its Redis URL)")
        profile = msgspec.json.decode(raw, type=NaiveRedisProfile)
    chosen = profile
    redis = Redis.from_url(chosen.redis_url, max_connections=_MAX_CONNECTIONS)

    @post(STREAMING_CONTINUE, status_code=200)
    async def streaming_continue(conversation_id: str, data: ContinueBody) -> ServerSentEvent:
        return ServerSentEvent(relay(redis, conversation_id, data.user_input.text, chosen))

    @get("/healthz")
    async def healthz() -> dict[str, str]:
        await redis.ping()
        return {"status": "ok"}

    return Litestar(
        route_handlers=[streaming_continue, healthz],
        on_shutdown=[redis.aclose],
        openapi_config=None,
    )
