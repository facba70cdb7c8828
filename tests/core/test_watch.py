"""Watch: replay from the log, then live from the hub, each item once; resync, pings, shutdown."""

from __future__ import annotations

import asyncio
import functools

import msgspec
from redis.asyncio import Redis

from streams.events import Item
from streams.hub import Hub
from streams.keys import Keys
from streams.reaper import Reaper
from streams.store import Store
from streams.types import Exchange, Usage
from streams.watch import PING, RECONNECT, Watch, WatchEvent
from tests.core.helpers import begin, delta_entry, new_session, until_true

XID = "x1"


class Log:
    """Writes a session's replay log by hand and publishes its entries, as FLUSH/FINISH do."""

    def __init__(self, redis: Redis, keys: Keys, sid: str) -> None:
        self.redis = redis
        self.keys = keys
        self.sid = sid
        self.payloads: dict[str, bytes] = {}
        self.ids: list[str] = []

    async def delta(self, seq: int, value: str) -> str:
        return await self._add("delta", delta_entry(seq, value))

    async def end(self, reply: str) -> str:
        exchange = Exchange(
            exchange_id=XID,
            session_id=self.sid,
            input_text="hello",
            reply_text=reply,
            status="completed",
            usage=Usage(),
            created_ms=0,
        )
        return await self._add("end", msgspec.json.encode(exchange))

    async def _add(self, kind: str, data: bytes) -> str:
        entry_id = str(await self.redis.xadd(self.keys.log(self.sid, XID), {"k": kind, "d": data}))
        self.payloads[entry_id] = f"{kind}|{entry_id}|".encode() + data
        self.ids.append(entry_id)
        return entry_id

    async def publish(self, *entry_ids: str) -> None:
        for entry_id in entry_ids:
            await self.redis.publish(self.keys.channel(self.sid), self.payloads[entry_id])


async def replay(store: Store, sid: str, after: str | None) -> list[Item]:
    return [Item(e.kind, e.id, e.data) for e in await store.read_log(sid, XID, after)]


async def collect(watch: Watch, timeout: float = 5.0) -> list[WatchEvent]:
    async def read() -> list[WatchEvent]:
        return [event async for event in watch.events()]

    return await asyncio.wait_for(read(), timeout)


def items_of(events: list[WatchEvent]) -> list[Item]:
    return [event for event in events if isinstance(event, Item)]


def reply_of(events: list[WatchEvent]) -> str:
    return "".join(item.delta().text for item in items_of(events) if item.kind == "delta")


async def test_a_resumed_watch_yields_each_item_once(
    hub: Hub, store: Store, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    log = Log(redis_client, keys, sid)
    for seq in range(1, 6):
        await log.delta(seq, f"t{seq} ")
    sub = await hub.subscribe(sid)
    last_seen = log.ids[1]  # the client already has t1 and t2
    initial = await replay(store, sid, last_seen)
    watch = Watch(store, sub, XID, last_seen, initial=initial, closing=asyncio.Event())

    # Everything published since the client's first connection arrives live as well.
    await log.publish(*log.ids)
    reading = asyncio.create_task(collect(watch))
    await log.delta(6, "t6 ")
    await log.end("t1 t2 t3 t4 t5 t6 ")
    await log.publish(*log.ids[5:])
    events = await reading

    assert [item.id for item in items_of(events)] == log.ids[2:]
    assert reply_of(events) == "t3 t4 t5 t6 "
    assert [item.kind for item in items_of(events)][-1] == "end"
    assert watch.last_id == log.ids[-1]


async def test_a_watch_drops_live_items_at_or_before_the_id_it_resumes_after(
    hub: Hub, store: Store, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    log = Log(redis_client, keys, sid)
    for seq in range(1, 4):
        await log.delta(seq, f"t{seq} ")
    await log.end("t1 t2 t3 ")
    sub = await hub.subscribe(sid)
    watch = Watch(store, sub, XID, log.ids[1], initial=[], closing=asyncio.Event())

    await log.publish(*log.ids)
    events = await collect(watch)

    assert [item.id for item in items_of(events)] == log.ids[2:]
    assert reply_of(events) == "t3 "


async def test_a_resumed_watch_yields_each_text_once_when_its_live_buffer_was_compacted(
    hub: Hub, store: Store, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    log = Log(redis_client, keys, sid)
    for seq in range(1, 4):
        await log.delta(seq, f"t{seq} ")
    sub = await hub.subscribe(sid)
    initial = await replay(store, sid, None)
    # t2 and t3 were published after the subscription and before the log was read, then more
    # live deltas pile up (a slow client) until the buffer compacts them.
    for seq in range(4, 19):
        await log.delta(seq, f"t{seq} ")
    await log.end("")
    await log.publish(*log.ids[1:])
    await until_true(lambda: bool(sub.items) and sub.items[-1].id == log.ids[-1])
    watch = Watch(store, sub, XID, None, initial=initial, closing=asyncio.Event())

    events = await collect(watch)

    assert reply_of(events) == "".join(f"t{seq} " for seq in range(1, 19))


async def test_a_watch_told_to_resync_reads_what_it_missed_from_the_log(
    hub: Hub, store: Store, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    log = Log(redis_client, keys, sid)
    await log.delta(1, "before ")
    sub = await hub.subscribe(sid)
    initial = await replay(store, sid, None)
    # Published while the hub was reconnecting: never delivered live.
    await log.delta(2, "lost ")
    await log.end("before lost ")
    sub.mark_resync()
    watch = Watch(store, sub, XID, None, initial=initial, closing=asyncio.Event())

    events = await collect(watch)

    assert [item.id for item in items_of(events)] == log.ids
    assert reply_of(events) == "before lost "


async def test_a_watch_on_a_closing_process_tells_its_client_to_reconnect(
    hub: Hub, store: Store
) -> None:
    sid = await new_session(store)
    sub = await hub.subscribe(sid)
    closing = asyncio.Event()
    closing.set()
    watch = Watch(store, sub, XID, None, initial=[], closing=closing)

    events = await collect(watch)

    assert events == [RECONNECT]
    assert hub.subscriber_count == 0


async def test_an_idle_watch_pings_then_ends_with_the_reaped_end_of_a_dead_runner(
    redis_url: str, store: Store, reaper: Reaper, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    await begin(store, sid, XID)
    log = Log(redis_client, keys, sid)
    await log.delta(1, "half a ")
    await log.delta(2, "reply")
    await redis_client.delete(keys.lock(sid))  # the runner's process died; its lock lapsed
    hub = Hub(redis_url, keys, keepalive=0.1)
    await hub.start()
    try:
        sub = await hub.subscribe(sid)
        initial = await replay(store, sid, None)
        alive = functools.partial(reaper.alive, sid, XID)
        watch = Watch(store, sub, XID, None, initial=initial, closing=asyncio.Event(), alive=alive)

        events = await collect(watch)
    finally:
        await hub.stop()

    assert events[:2] == initial
    assert events[2] is PING
    end = events[-1]
    assert isinstance(end, Item) and end.kind == "end"
    assert len(events) == 4
    exchange = end.exchange()
    assert (exchange.status, exchange.finish_reason) == ("failed", "interrupted")
    assert exchange.reply_text == "half a reply"
