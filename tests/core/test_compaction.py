"""The engine's history rules without HTTP: imported messages, the context builder's merge,
and commit's and import's Redis writes being safe to run twice."""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from streams.agents import Agent
from streams.context import build_request, select_context
from streams.history import messages_of
from streams.keys import Keys
from streams.records import usage_args
from streams.scripts import COMMIT, IMPORT, Script
from streams.store import Store
from streams.types import Archive, Exchange, HistoryMessage, ImportedMessage, Usage
from tests.core.helpers import OWNER, new_session


def exchange(xid: str, user: str, reply: str, *, imported: bool = False) -> Exchange:
    return Exchange(
        exchange_id=xid,
        session_id="s",
        input_text=user,
        reply_text=reply,
        status="completed",
        usage=Usage(),
        created_ms=1,
        imported=imported,
    )


def msg(xid: str, role: str, text: str) -> HistoryMessage:
    return HistoryMessage(exchange_id=xid, role=role, text=text, created_ms=1)  # type: ignore[arg-type]


def test_an_unanswered_exchange_holds_no_messages_but_an_imported_one_holds_its_own() -> None:
    history = [
        exchange("x1", "lost", ""),
        exchange("x2", "asked", "", imported=True),
        exchange("x3", "", "said", imported=True),
        exchange("x4", "q", "a"),
    ]

    found = [(m.exchange_id, m.role, m.text) for m in messages_of(history)]

    assert found == [
        ("x2", "user", "asked"),
        ("x3", "assistant", "said"),
        ("x4", "user", "q"),
        ("x4", "assistant", "a"),
    ]


def test_consecutive_user_messages_reach_the_model_as_one_turn() -> None:
    agent = Agent(agent_id="a", name="a")
    live = [msg("x1", "user", "one"), msg("x2", "user", "two")]

    request = build_request(agent, live, "three", {})

    assert [(m.role, m.text) for m in request.messages] == [("user", "one\n\ntwo\n\nthree")]


def test_summaries_fill_what_the_live_messages_leave_of_the_budget() -> None:
    live = [msg("x1", "user", "a b"), msg("x1", "assistant", "c")]
    old = Archive(number=1, summary="s1 s2 s3", first=0, last=2, created_ms=1, usage=Usage())
    new = Archive(number=2, summary="t1", first=2, last=4, created_ms=1, usage=Usage())

    chosen = select_context(live, [old, new], 5)

    assert [a.number for a in chosen.summaries] == [2]
    assert (len(chosen.messages), chosen.tokens, chosen.archives_total) == (2, 4, 2)


async def test_a_repeated_commit_call_changes_nothing(
    store: Store, keys: Keys, redis_client: Redis
) -> None:
    sid = await new_session(store)
    await store.import_messages(OWNER, sid, [ImportedMessage(role="user", text="hi")], 1)
    archive = Archive(
        number=1, summary="s", first=0, last=1, created_ms=5, usage=Usage(output_tokens=3)
    )
    args = [OWNER, 1, 1, msgspec.json.encode(archive), 0, 5, *usage_args(archive.usage), "call-1"]
    script = Script(COMMIT)

    first = await script(redis_client, [keys.session(sid), keys.archives(sid)], args)
    again = await script(redis_client, [keys.session(sid), keys.archives(sid)], args)
    session = await store.get_session(OWNER, sid)

    assert (first, again) == ("ok", "ok")
    assert (session.commit_count, session.archived_messages, session.usage.output_tokens) == (
        1,
        1,
        3,
    )
    assert [a.number for a in await store.archives(sid)] == [1]


async def test_a_commit_racing_another_is_refused(
    store: Store, keys: Keys, redis_client: Redis
) -> None:
    sid = await new_session(store)
    archive = Archive(number=1, summary="s", first=0, last=0, created_ms=5, usage=Usage())
    base = [OWNER, 1, 0, msgspec.json.encode(archive), 0, 5, *usage_args(archive.usage)]
    script = Script(COMMIT)
    keys_ = [keys.session(sid), keys.archives(sid)]

    assert await script(redis_client, keys_, [*base, "call-a"]) == "ok"
    assert await script(redis_client, keys_, [*base, "call-b"]) == "conflict"


async def test_imported_messages_are_exchanges_of_one_message_each(store: Store) -> None:
    sid = await new_session(store)
    messages = [ImportedMessage(role="user", text="q"), ImportedMessage(role="assistant", text="a")]

    await store.import_messages(OWNER, sid, messages, 7)

    history = await store.completed_history(sid)
    assert [(x.input_text, x.reply_text, x.imported) for x in history] == [
        ("q", "", True),
        ("", "a", True),
    ]
    assert (await store.get_session(OWNER, sid)).exchange_count == 2


async def test_a_repeated_import_call_adds_its_messages_once(
    store: Store, keys: Keys, redis_client: Redis
) -> None:
    sid = await new_session(store)
    import_keys = [
        keys.session(sid),
        keys.exchanges(sid),
        keys.lock(sid),
        keys.archives(sid),
        keys.exchange(sid, "m1"),
        keys.exchange(sid, "m2"),
    ]
    args = [OWNER, 7, 600, 9, "m1", "q", "", "m2", "", "a"]
    script = Script(IMPORT)

    outcomes = [await script(redis_client, import_keys, args) for _ in range(2)]

    assert outcomes == ["ok", "ok"]
    assert await redis_client.lrange(keys.exchanges(sid), 0, -1) == ["m1", "m2"]
    assert (await store.get_session(OWNER, sid)).exchange_count == 2
