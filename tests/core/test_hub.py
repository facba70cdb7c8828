"""Hub and Subscription: fan-out of PUBLISHed items, bounded buffers, resync after reconnects."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from server.embedded_redis import RedisProcess
from streams.events import Item
from streams.hub import Hub, Subscription
from streams.keys import Keys
from tests.core.helpers import delta_entry, until, until_true


async def subscribers(client: Redis, channel: str) -> int:
    """How many connections Redis has subscribed to ``channel``."""
    [(_, count)] = await client.pubsub_numsub(channel)
    return int(count)


def delta_item(seq: int, value: str) -> Item:
    return Item("delta", f"1000-{seq}", delta_entry(seq, value))


def end_item(seq: int) -> Item:
    return Item("end", f"1000-{seq}", b"{}")


def texts(items: list[Item]) -> list[str]:
    return [item.delta().text if item.kind == "delta" else "<end>" for item in items]


async def test_a_published_item_reaches_every_subscriber_of_its_channel_and_no_other(
    hub: Hub, redis_client: Redis, keys: Keys
) -> None:
    first = await hub.subscribe("room-a")
    second = await hub.subscribe("room-a")
    other = await hub.subscribe("room-b")

    await redis_client.publish(keys.channel("room-a"), b"delta|5-1|" + delta_entry(1, "hi"))
    # Messages reach the hub in publish order: once the marker on room-b is in, so is room-a's.
    await redis_client.publish(keys.channel("room-b"), b"delta|6-1|" + delta_entry(1, "marker"))
    await until_true(lambda: first.backlog == 1 and second.backlog == 1 and other.backlog == 1)

    for sub in (first, second):
        [item] = sub.take()
        delta = item.delta()
        assert (item.kind, item.id, delta.seq, delta.text) == ("delta", "5-1", 1, "hi")
    assert texts(other.take()) == ["marker"]


async def test_a_closed_subscription_gets_nothing_more(
    hub: Hub, redis_client: Redis, keys: Keys
) -> None:
    leaving = await hub.subscribe("room-c")
    staying = await hub.subscribe("room-c")
    leaving.close()

    await redis_client.publish(keys.channel("room-c"), b"delta|7-1|" + delta_entry(1, "after"))
    await until_true(lambda: staying.backlog == 1)

    assert leaving.backlog == 0
    assert hub.subscriber_count == 1
    assert texts(staying.take()) == ["after"]


async def test_the_last_subscriber_leaving_unsubscribes_the_channel(
    hub: Hub, redis_client: Redis, keys: Keys
) -> None:
    sub = await hub.subscribe("room-d")
    assert await subscribers(redis_client, keys.channel("room-d")) == 1

    sub.close()

    assert hub.subscriber_count == 0
    await until(lambda: subscribers(redis_client, keys.channel("room-d")), lambda n: n == 0)


def settled_subscription(keys: Keys) -> Subscription:
    """A subscription whose watcher has read the replay log, so its buffer may merge."""
    sub = Subscription(Hub("redis://unused", keys), "s", keys.channel("s"))
    sub.settle((0, 0))
    return sub


def test_sixteen_pending_deltas_merge_into_one(keys: Keys) -> None:
    sub = settled_subscription(keys)
    for seq in range(1, 16):
        sub.push(delta_item(seq, f"t{seq} "))
    assert sub.backlog == 15

    sub.push(delta_item(16, "t16"))

    [merged] = sub.take()
    delta = merged.delta()
    assert delta.text == "".join(f"t{seq} " for seq in range(1, 16)) + "t16"
    assert delta.seq == 16
    assert delta.usage.output_tokens == 16
    assert merged.id == "1000-16"


def test_merging_pending_deltas_keeps_an_end_event_in_place(keys: Keys) -> None:
    sub = settled_subscription(keys)
    for seq in range(1, 11):
        sub.push(delta_item(seq, "a"))
    sub.push(end_item(11))
    for seq in range(12, 17):
        sub.push(delta_item(seq, "b"))

    items = sub.take()

    assert [item.kind for item in items] == ["delta", "end", "delta"]
    assert texts(items) == ["a" * 10, "<end>", "b" * 5]
    assert [item.delta().seq for item in items if item.kind == "delta"] == [10, 16]


def test_a_subscription_merges_nothing_until_its_watcher_has_read_the_log(keys: Keys) -> None:
    sub = Subscription(Hub("redis://unused", keys), "s", keys.channel("s"))
    for seq in range(1, 21):
        sub.push(delta_item(seq, f"t{seq} "))
    assert sub.backlog == 20

    sub.settle((1000, 3))

    [merged] = sub.take()
    assert merged.delta().text == "".join(f"t{seq} " for seq in range(4, 21))


def test_a_subscription_told_to_resync_stops_merging_until_settled_again(keys: Keys) -> None:
    sub = settled_subscription(keys)
    sub.mark_resync()

    for seq in range(1, 21):
        sub.push(delta_item(seq, "x"))

    assert sub.backlog == 20


async def test_subscribers_are_told_to_resync_after_the_hub_reconnects(
    redis_factory: Callable[..., RedisProcess], keys: Keys
) -> None:
    redis = redis_factory()
    hub = Hub(redis.url, keys, keepalive=15.0)
    await hub.start()
    try:
        await until_true(lambda: hub.connected)
        sub = await hub.subscribe("room-e")
        assert not sub.resync

        redis.stop()
        await until_true(lambda: not hub.connected)
        redis.start()
        await until_true(lambda: hub.connected and sub.resync)

        assert hub.reconnects == 1
        assert sub.wakeup.is_set()
        # The channel is subscribed again: live items flow to the same subscription.
        channel = keys.channel("room-e")
        client = Redis.from_url(redis.url)
        try:
            await until(lambda: subscribers(client, channel), lambda n: n == 1)
            await client.publish(channel, b"delta|8-1|" + delta_entry(1, "again"))
        finally:
            await client.aclose()
        await until_true(lambda: sub.backlog == 1)
        assert texts(sub.take()) == ["again"]
    finally:
        await hub.stop()
