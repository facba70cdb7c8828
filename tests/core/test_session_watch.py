"""SessionWatch: a whole session, history then live, across exchanges, each item once.

BEGIN publishes a ``begin`` on the session's channel; deltas carry no exchange id, so the
watch places them by the channel's order (and, right after reading the history, by one
look in the running exchange's log).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from streams.backends.base import Chunk
from streams.events import Item
from streams.hub import Hub, Subscription
from streams.keys import Keys
from streams.reaper import Reaper
from streams.scripts import BEGIN, Script
from streams.session_watch import GONE, SessionEvent, SessionWatch, Step, history
from streams.store import Store
from streams.watch import PING, Watch
from tests.core.helpers import (
    OWNER,
    PacedBackend,
    Rig,
    begin,
    delta_entry,
    new_session,
    text,
    until,
    until_true,
)


@dataclass
class Reader:
    """Reads a watch's events in the background, as a streaming response would."""

    watch: SessionWatch
    events: list[SessionEvent] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> Reader:
        async def read() -> None:
            async for event in self.watch.events():
                self.events.append(event)

        self.task = asyncio.create_task(read())
        return self

    @property
    def steps(self) -> list[Step]:
        return [e for e in self.events if isinstance(e, Step)]

    async def until_end_of(self, xid: str) -> None:
        def ended() -> bool:
            return any(s.xid == xid and s.item.kind == "end" for s in self.steps)

        await until_true(ended)

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def outline(steps: Sequence[Step]) -> list[tuple[str, str, str]]:
    """(xid, kind, text) per step, consecutive deltas of one exchange folded into one."""
    out: list[tuple[str, str, str]] = []
    for step in steps:
        kind = step.item.kind
        said = step.item.delta().text if kind == "delta" else ""
        if kind == "delta" and out and out[-1][:2] == (step.xid, "delta"):
            out[-1] = (step.xid, "delta", out[-1][2] + said)
        else:
            out.append((step.xid, kind, said))
    return out


async def run(rig: Rig, sid: str, xid: str, *parts: str) -> None:
    """Run exchange ``xid`` to its end; each part is its own delta (0.1 s apart)."""
    steps: list[Chunk | float] = []
    for part in parts:
        steps += [text(part), 0.1]
    runner = await rig.runner(PacedBackend(steps), sid=sid, xid=xid)
    await asyncio.wait_for(runner.run(), 5.0)


async def watch_of(
    store: Store,
    reaper: Reaper,
    hub: Hub,
    sid: str,
    *,
    start: int = 0,
    after: str | None = None,
    sub: Subscription | None = None,
) -> SessionWatch:
    sub = sub or await hub.subscribe(sid)
    watch = SessionWatch(
        store, reaper, sub, OWNER, start=start, after=after, closing=asyncio.Event()
    )
    await watch.prime()
    return watch


async def test_begin_publishes_one_begin_per_exchange_even_when_run_twice(
    hub: Hub, store: Store, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    sub = await hub.subscribe(sid)
    begin_keys = [
        keys.session(sid),
        keys.lock(sid),
        keys.exchanges(sid),
        keys.exchange(sid, "x1"),
        keys.cancel(sid),
        keys.channel(sid),
    ]
    args = ["x1", OWNER, 1_700_000_000_123, 10_000, "hi", 600, 2, "{}", "call-1"]

    outcomes = [await Script(BEGIN)(redis_client, begin_keys, args) for _ in range(2)]
    await redis_client.publish(keys.channel(sid), b"delta|9-0|" + delta_entry(1, "marker"))
    await until_true(lambda: any(i.kind == "delta" for i in sub.items))

    assert outcomes == ["ok", "ok"]
    begins = [(i.kind, i.id, i.data) for i in sub.items if i.kind == "begin"]
    assert begins == [("begin", "1700000000123-0", b"x1")]
    sub.close()


async def test_a_session_watch_hands_on_the_history_then_each_new_exchange_live(
    hub: Hub, store: Store, reaper: Reaper, rig: Rig
) -> None:
    sid = await new_session(store)
    await run(rig, sid, "x1", "one ", "two")
    reader = Reader(await watch_of(store, reaper, hub, sid)).start()

    await run(rig, sid, "x2", "three ", "four")
    await run(rig, sid, "x3", "five")
    await reader.until_end_of("x3")
    await reader.stop()

    assert outline(reader.steps) == [
        ("x1", "begin", ""),
        ("x1", "delta", "one two"),
        ("x1", "end", ""),
        ("x2", "begin", ""),
        ("x2", "delta", "three four"),
        ("x2", "end", ""),
        ("x3", "begin", ""),
        ("x3", "delta", "five"),
        ("x3", "end", ""),
    ]
    ids = [(s.xid, s.item.kind, s.item.id) for s in reader.steps]
    assert len(ids) == len(set(ids))
    assert reader.steps[3].item.exchange().input_text == "hello"


async def test_a_session_watch_joins_an_exchange_midway_and_stays_open_for_the_next(
    hub: Hub, store: Store, reaper: Reaper, rig: Rig
) -> None:
    sid = await new_session(store)
    gate = asyncio.Event()
    runner = await rig.runner(
        PacedBackend([text("before "), gate, text("after")]), sid=sid, xid="x1"
    )
    task = asyncio.create_task(runner.run())
    await until(lambda: store.read_log(sid, "x1", None), lambda entries: len(entries) == 1)
    reader = Reader(await watch_of(store, reaper, hub, sid)).start()

    gate.set()
    await asyncio.wait_for(task, 5.0)
    await run(rig, sid, "x2", "next")
    await reader.until_end_of("x2")
    await reader.stop()

    assert outline(reader.steps) == [
        ("x1", "begin", ""),
        ("x1", "delta", "before after"),
        ("x1", "end", ""),
        ("x2", "begin", ""),
        ("x2", "delta", "next"),
        ("x2", "end", ""),
    ]


async def test_a_resumed_session_watch_gives_the_rest_of_that_exchange_then_the_later_ones(
    hub: Hub, store: Store, reaper: Reaper, rig: Rig
) -> None:
    sid = await new_session(store)
    await run(rig, sid, "x1", "a", "b")
    await run(rig, sid, "x2", "c")
    first = (await store.read_log(sid, "x1", None))[0]

    reader = Reader(await watch_of(store, reaper, hub, sid, start=0, after=first.id)).start()
    await reader.until_end_of("x2")
    await reader.stop()

    texts = "".join(s.item.delta().text for s in reader.steps if s.item.kind == "delta")
    assert texts == "bc"
    assert [s.item.id for s in reader.steps if s.xid == "x1"][1] != first.id


async def test_an_exchange_whose_log_expired_is_replayed_as_its_begin_and_stored_end(
    hub: Hub, store: Store, reaper: Reaper, rig: Rig, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    await run(rig, sid, "x1", "gone ", "by")
    await redis_client.delete(keys.log(sid, "x1"))

    watch = await watch_of(store, reaper, hub, sid)
    reader = Reader(watch).start()
    await reader.until_end_of("x1")
    await reader.stop()

    assert [s.item.kind for s in reader.steps] == ["begin", "end"]
    assert reader.steps[-1].item.exchange().reply_text == "gone by"


async def test_an_earlier_exchanges_delta_still_in_flight_is_not_taken_for_the_running_ones(
    hub: Hub, store: Store, reaper: Reaper, rig: Rig, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    await run(rig, sid, "x1", "old")
    stale = (await store.read_log(sid, "x1", None))[0]
    await begin(store, sid, "x2")  # running, nothing said yet
    sub = await hub.subscribe(sid)
    reader = Reader(await watch_of(store, reaper, hub, sid, sub=sub)).start()

    # x1's delta, delivered late, arrives before anything of x2's: not x2's.
    await redis_client.publish(keys.channel(sid), b"delta|" + stale.id.encode() + b"|" + stale.data)
    fresh = str(
        await redis_client.xadd(keys.log(sid, "x2"), {"k": "delta", "d": delta_entry(1, "new")})
    )
    await redis_client.publish(
        keys.channel(sid), f"delta|{fresh}|".encode() + delta_entry(1, "new")
    )
    await until_true(lambda: any(s.xid == "x2" and s.item.kind == "delta" for s in reader.steps))
    await reader.stop()

    assert outline(reader.steps)[-2:] == [("x2", "begin", ""), ("x2", "delta", "new")]


async def test_a_session_watch_told_to_resync_reads_the_exchanges_it_missed(
    hub: Hub, store: Store, reaper: Reaper, rig: Rig, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    sub = await hub.subscribe(sid)
    watch = await watch_of(store, reaper, hub, sid, sub=sub)
    await hub.stop()  # what is published now is never delivered
    await run(rig, sid, "x1", "missed")
    sub.mark_resync()

    reader = Reader(watch).start()
    await reader.until_end_of("x1")
    await reader.stop()

    assert outline(reader.steps) == [
        ("x1", "begin", ""),
        ("x1", "delta", "missed"),
        ("x1", "end", ""),
    ]


async def test_an_idle_session_watch_ends_when_its_session_is_deleted(
    hub: Hub, store: Store, reaper: Reaper, rig: Rig
) -> None:
    sid = await new_session(store)
    await run(rig, sid, "x1", "hi")
    sub = await hub.subscribe(sid)
    reader = Reader(await watch_of(store, reaper, hub, sid, sub=sub)).start()
    await reader.until_end_of("x1")

    await store.delete_session(OWNER, sid)
    sub.tick()
    sub.tick()  # two quiet keepalive ticks: a ping is due
    await until_true(lambda: bool(reader.events) and reader.events[-1] is GONE)

    assert reader.events[-2:] == [PING, GONE]
    assert reader.task is not None and reader.task.done()


async def test_the_history_pages_by_exchange_and_names_the_next_one(store: Store, rig: Rig) -> None:
    sid = await new_session(store)
    for xid in ("x1", "x2", "x3"):
        await run(rig, sid, xid, xid)

    steps, more = await history(store, sid, 0, 2)
    rest, after_rest = await history(store, sid, 2, 2)

    assert more and not after_rest
    assert [s.xid for s in steps if s.item.kind == "begin"] == ["x1", "x2"]
    assert outline(rest) == [("x3", "begin", ""), ("x3", "delta", "x3"), ("x3", "end", "")]


async def test_an_exchange_watch_skips_the_begin_of_the_next_exchange(
    hub: Hub, store: Store, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    sub = await hub.subscribe(sid)
    watch = Watch(store, sub, "x1", None, initial=[], closing=asyncio.Event())
    entry = str(await redis_client.xadd(keys.log(sid, "x1"), {"k": "delta", "d": b"x"}))
    await redis_client.publish(keys.channel(sid), f"begin|{entry}|x1".encode())
    end = Item("end", "99999999999999-0", b"{}")
    await redis_client.publish(keys.channel(sid), b"end|" + end.id.encode() + b"|{}")

    events = [event async for event in watch.events()]

    assert [(e.kind, e.id) for e in events if isinstance(e, Item)] == [("end", end.id)]


async def test_a_session_watch_ends_an_exchange_whose_runner_died_as_interrupted(
    hub: Hub, store: Store, reaper: Reaper, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    await begin(store, sid, "x1")
    await redis_client.xadd(keys.log(sid, "x1"), {"k": "delta", "d": delta_entry(1, "half")})
    await redis_client.delete(keys.lock(sid))  # the runner's process died; its lock lapsed

    reader = Reader(await watch_of(store, reaper, hub, sid)).start()
    await reader.until_end_of("x1")
    await reader.stop()

    assert outline(reader.steps) == [
        ("x1", "begin", ""),
        ("x1", "delta", "half"),
        ("x1", "end", ""),
    ]
    end = reader.steps[-1].item.exchange()
    assert (end.status, end.finish_reason, end.reply_text) == ("failed", "interrupted", "half")
