"""Qoder's cloud sessions and Anthropic's managed-agents sessions, driven by the official
``anthropic`` SDK (``client.beta.sessions`` / ``.events``) against a real uvicorn process,
and by raw httpx on Qoder's mount (``/api/v1/cloud``) where its own dialect or the bytes
matter: the client is the client, unchanged.

The module has a server of its own (its own key prefix), so listings see only its sessions.
Run with ``-s`` to see the observed delta spacing and a turn's event sequence.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import pytest
from redis.asyncio import Redis

from streams.keys import Keys
from tests.support.native import expected_reply, snapshot, words
from tests.support.servers import ServerFactory, ServerProcess, new_key_prefix, start_server
from tests.support.sse import SseEvent, iter_events, open_stream

QODER = "/api/v1/cloud"
MAX_BODY_BYTES = 65_536
Json = dict[str, Any]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServerProcess]:
    process = start_server(
        tmp_path_factory.mktemp("qoder-sessions"),
        redis_url=redis_url,
        key_prefix=new_key_prefix("q"),
        env={"PARLEY_MAX_BODY_BYTES": str(MAX_BODY_BYTES), "PARLEY_KEEPALIVE_SECONDS": "2"},
    )
    yield process
    process.terminate()


def client_of(
    server: ServerProcess, *, key: str = "k", retries: int = 2
) -> anthropic.AsyncAnthropic:
    """What a user writes: the base URL and a key."""
    base_url = f"{server.base_url}/anthropic"
    return anthropic.AsyncAnthropic(base_url=base_url, api_key=key, max_retries=retries)


@pytest.fixture
def sdk(server: ServerProcess) -> anthropic.AsyncAnthropic:
    return client_of(server)


@pytest.fixture
def strict(server: ServerProcess) -> anthropic.AsyncAnthropic:
    """No retries, so a refusal shows as it is."""
    return client_of(server, retries=0)


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client(headers={"Authorization": "Bearer k"}) as client:
        yield client


@pytest.fixture
async def environment_id(sdk: anthropic.AsyncAnthropic) -> str:
    created = await sdk.beta.environments.create(name=f"env-{uuid.uuid4().hex[:8]}")
    return created.id


def said(text: str) -> list[Json]:
    return [{"type": "user.message", "content": [{"type": "text", "text": text}]}]


async def create(
    sdk: anthropic.AsyncAnthropic, environment_id: str, agent: Any = "echo", **extra: Any
) -> Any:
    return await sdk.beta.sessions.create(
        agent=agent, environment_id=environment_id, extra_body=extra or None
    )


async def until_idle(stream: Any, seconds: float = 20.0) -> list[tuple[float, Any]]:
    """(arrival time, event) of everything up to the first session.status_idle."""
    seen: list[tuple[float, Any]] = []

    async def read() -> None:
        async for event in stream:
            seen.append((time.monotonic(), event))
            if event.type == "session.status_idle":
                return

    await asyncio.wait_for(read(), seconds)
    return seen


async def turn(sdk: anthropic.AsyncAnthropic, session_id: str, text: str) -> list[Any]:
    """Send ``text`` and return the turn's events: a stream resumed after the user.message."""
    sent = await sdk.beta.sessions.events.send(session_id, events=said(text))
    assert sent.data is not None
    after = {"Last-Event-ID": sent.data[0].id}
    stream = await sdk.beta.sessions.events.stream(session_id, extra_headers=after)
    seen = await until_idle(stream)
    await stream.close()
    return [event for _, event in seen]


def outline(types: list[str]) -> list[str]:
    """Event types in order, each run of one type folded into ``type xN``."""
    out: list[tuple[str, int]] = []
    for kind in types:
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + 1)
        else:
            out.append((kind, 1))
    return [kind if n == 1 else f"{kind} x{n}" for kind, n in out]


# --- the loop ------------------------------------------------------------------------------


async def test_a_turn_previews_its_text_at_the_flush_interval_and_adds_up_to_message_and_usage(
    sdk: anthropic.AsyncAnthropic, environment_id: str
) -> None:
    agent = await sdk.beta.agents.create(model="synthetic-echo", name="echo-200")
    session = await create(
        sdk,
        environment_id,
        agent=agent.id,
        delta_flush_interval_ms=200,
        incremental_streaming_enabled=True,
    )
    before = await sdk.beta.sessions.retrieve(session.id)
    text = words(24)
    stream = await sdk.beta.sessions.events.stream(session.id, event_deltas=["agent.message"])

    sent = await sdk.beta.sessions.events.send(session.id, events=said(text))
    seen = await until_idle(stream)
    await stream.close()
    after = await sdk.beta.sessions.retrieve(session.id)

    events = [event for _, event in seen]
    message = next(e for e in events if e.type == "agent.message")
    deltas = [(at, e) for at, e in seen if e.type == "event_delta"]
    starts = [e for e in events if e.type == "event_start"]
    gaps = [round(b[0] - a[0], 3) for a, b in itertools.pairwise(deltas)]
    print(f"\ndelta spacing at delta_flush_interval_ms=200: {gaps} s")
    print("event sequence:", " -> ".join(outline([e.type for e in events])))

    assert sent.data is not None and sent.data[0].id == events[0].id
    assert events[0].type == "user.message" and events[0].content[0].text == text
    assert [s.event.id for s in starts] == [message.id]
    assert {e.event_id for _, e in deltas} == {message.id}
    assert len(deltas) >= 3 and min(gaps) >= 0.15
    assert "".join(e.delta.content.text for _, e in deltas) == message.content[0].text
    assert message.content[0].text == text  # the echo agent says it back
    end = next(e for e in events if e.type == "span.model_request_end")
    request_start = next(e for e in events if e.type == "span.model_request_start")
    assert end.model_request_start_id == request_start.id
    assert events[-1].stop_reason.type == "end_turn"
    usage = end.model_usage
    assert usage.output_tokens == after.usage.output_tokens - (before.usage.output_tokens or 0)
    assert usage.input_tokens == after.usage.input_tokens - (before.usage.input_tokens or 0)
    assert usage.cache_read_input_tokens == after.usage.cache_read_input_tokens
    creation = after.usage.cache_creation
    assert creation is not None
    written = (creation.ephemeral_5m_input_tokens or 0) + (creation.ephemeral_1h_input_tokens or 0)
    assert usage.cache_creation_input_tokens == written
    assert usage.output_tokens > 0


# --- Qoder's own dialect, over raw HTTP ------------------------------------------------------


async def qoder_session(http: httpx.AsyncClient, environment_id: str, **fields: Any) -> Json:
    body = {"agent": "echo", "environment_id": environment_id, **fields}
    response = await http.post(f"{QODER}/sessions", json=body)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def qoder_say(http: httpx.AsyncClient, session_id: str, text: str) -> Json:
    response = await http.post(f"{QODER}/sessions/{session_id}/events", json={"events": said(text)})
    assert response.status_code == 200, response.text
    sent: Json = response.json()["data"][0]
    return sent


async def read_frames(
    http: httpx.AsyncClient,
    session_id: str,
    *,
    stop: Any,
    last_event_id: str | None = None,
    seconds: float = 20.0,
) -> list[SseEvent]:
    """Frames of the session's stream until ``stop(frames)``; then the connection drops."""
    frames: list[SseEvent] = []
    url = f"{QODER}/sessions/{session_id}/events/stream"

    async def read() -> None:
        async with open_stream(
            http, "GET", url, headers={"Accept": "application/json"}, last_event_id=last_event_id
        ) as response:
            assert response.status_code == 200, await response.aread()
            async for frame in iter_events(response):
                if frame.has_data:
                    frames.append(frame)
                    if stop(frames):
                        return

    await asyncio.wait_for(read(), seconds)
    return frames


def count_of(kind: str, n: int) -> Any:
    return lambda frames: sum(f.event == kind for f in frames) >= n


def idle(frames: list[SseEvent]) -> bool:
    return frames[-1].event == "session.status_idle"


async def test_qoders_incremental_stream_resumes_after_a_drop_with_nothing_lost_or_doubled(
    http: httpx.AsyncClient, environment_id: str
) -> None:
    session = await qoder_session(
        http, environment_id, incremental_streaming_enabled=True, delta_flush_interval_ms=100
    )
    text = words(60)
    await qoder_say(http, session["id"], text)

    first = await read_frames(http, session["id"], stop=count_of("agent.content_block_delta", 3))
    rest = await read_frames(http, session["id"], stop=idle, last_event_id=first[-1].id)
    frames = first + rest

    ids = [f.id for f in frames]
    assert len(ids) == len(set(ids))
    assert any(f.event == "agent.content_block_delta" for f in rest)  # it dropped midway
    for frame in frames:
        data = frame.json()
        assert data["type"] == frame.event and data["id"] == frame.id
        assert data["session_id"] == session["id"]
    deltas = [f.json() for f in frames if f.event == "agent.content_block_delta"]
    message = next(f.json() for f in frames if f.event == "agent.message")
    assert "".join(d["delta"]["text"] for d in deltas) == message["content"][0]["text"] == text
    assert {d["message_id"] for d in deltas} == {message["id"]}
    assert [f.event for f in frames if not f.event.startswith("agent.content_block_delta")] == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.message_start",
        "agent.content_block_start",
        "agent.content_block_stop",
        "agent.message_delta",
        "agent.message_stop",
        "agent.message",
        "span.model_request_end",
        "session.status_idle",
    ]
    print("\nQoder's incremental stream (excerpt):")
    for frame in [*frames[3:6], *frames[-5:-3]]:
        print(f"id: {frame.id}\nevent: {frame.event}\ndata: {frame.data}\n")


# --- interrupt, delete, list -----------------------------------------------------------------


async def exchanges(http: httpx.AsyncClient, session_id: str) -> list[Json]:
    sid = session_id.removeprefix("sess_")
    response = await http.get(f"/v1/sessions/{sid}/exchanges", params={"limit": 100})
    assert response.status_code == 200, response.text
    found: list[Json] = response.json()["data"]
    return found


async def test_an_interrupt_stops_the_turn_keeps_its_partial_text_and_the_next_turn_runs(
    sdk: anthropic.AsyncAnthropic, environment_id: str, http: httpx.AsyncClient
) -> None:
    session = await create(sdk, environment_id)
    text = words(200)
    stream = await sdk.beta.sessions.events.stream(session.id, event_deltas=["agent.message"])
    await sdk.beta.sessions.events.send(session.id, events=said(text))
    async for event in stream:
        if event.type == "event_delta":
            break

    stopped = await sdk.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}])
    first = [e for _, e in await until_idle(stream)]
    await sdk.beta.sessions.events.send(session.id, events=said("and again"))
    second = [e for _, e in await until_idle(stream)]
    await stream.close()

    partial = next(e for e in first if e.type == "agent.message").content[0].text
    assert 0 < len(partial) < len(text) and text.startswith(partial)
    assert stopped.data is not None
    assert next(e for e in first if e.type == "user.interrupt").id == stopped.data[0].id
    assert first[-1].stop_reason.type == "interrupted"
    stored = await exchanges(http, session.id)
    assert [(x["status"], x["response"]["text"]) for x in stored] == [
        ("cancelled", partial),
        ("completed", "and again"),
    ]
    assert second[-1].stop_reason.type == "end_turn"
    assert next(e for e in second if e.type == "agent.message").content[0].text == "and again"


async def test_a_deleted_session_is_gone_for_the_sdk(
    sdk: anthropic.AsyncAnthropic, strict: anthropic.AsyncAnthropic, environment_id: str
) -> None:
    session = await create(sdk, environment_id)

    deleted = await sdk.beta.sessions.delete(session.id)

    assert (deleted.id, deleted.type) == (session.id, "session_deleted")
    with pytest.raises(anthropic.NotFoundError):
        await strict.beta.sessions.retrieve(session.id)


async def test_the_sdk_pages_through_five_sessions_two_at_a_time(
    sdk: anthropic.AsyncAnthropic, environment_id: str, http: httpx.AsyncClient
) -> None:
    agent = await sdk.beta.agents.create(model="synthetic-echo", name="paged")
    made = [(await create(sdk, environment_id, agent=agent.id)).id for _ in range(5)]
    newest_first = made[::-1]

    pages = [await sdk.beta.sessions.list(limit=2, agent_id=agent.id)]
    while pages[-1].has_next_page():
        pages.append(await pages[-1].get_next_page())
    every = [s.id async for s in sdk.beta.sessions.list(limit=2, agent_id=agent.id)]
    qoder = await http.get(f"{QODER}/sessions", params={"limit": 2, "agent_id": agent.id})
    after = await http.get(
        f"{QODER}/sessions",
        params={"limit": 2, "agent_id": agent.id, "after_id": qoder.json()["last_id"]},
    )

    assert [[s.id for s in page.data] for page in pages] == [
        newest_first[:2],
        newest_first[2:4],
        newest_first[4:],
    ]
    assert every == newest_first
    first_page = qoder.json()
    assert (first_page["first_id"], first_page["last_id"], first_page["has_more"]) == (
        newest_first[0],
        newest_first[1],
        True,
    )
    assert [s["id"] for s in after.json()["data"]] == newest_first[2:4]


# --- refusals: the right SDK class, and nothing stored changed ----------------------------


async def refused(server: ServerProcess, call: Any, kind: type[Exception]) -> Any:
    """The error ``call()`` raises, of class ``kind``; Redis holds exactly what it held."""
    before = await snapshot(server.redis_url, server.key_prefix)
    with pytest.raises(kind) as caught:
        await call()
    assert await snapshot(server.redis_url, server.key_prefix) == before
    return caught.value


def error_of(caught: anthropic.APIStatusError) -> Json:
    body = caught.body
    assert isinstance(body, dict)
    error: Json = body.get("error", body)
    return error


@pytest.mark.parametrize("interval", [49, 5001])
async def test_a_flush_interval_outside_50_to_5000_ms_is_refused_naming_field_and_range(
    server: ServerProcess, strict: anthropic.AsyncAnthropic, environment_id: str, interval: int
) -> None:
    caught = await refused(
        server,
        lambda: create(strict, environment_id, delta_flush_interval_ms=interval),
        anthropic.BadRequestError,
    )

    error = error_of(caught)
    assert (error["type"], error["param"]) == ("invalid_request_error", "delta_flush_interval_ms")
    assert "between 50 and 5000" in error["message"] and str(interval) in error["message"]


async def test_a_session_in_an_unknown_environment_is_refused(
    server: ServerProcess, strict: anthropic.AsyncAnthropic
) -> None:
    caught = await refused(
        server, lambda: create(strict, "env_000000000000000000000000"), anthropic.NotFoundError
    )

    assert error_of(caught)["details"] == {"error_code": "environment_not_found"}


async def test_a_session_of_an_unknown_agent_version_is_refused(
    server: ServerProcess, strict: anthropic.AsyncAnthropic, environment_id: str
) -> None:
    agent = {"type": "agent", "id": "echo", "version": 99}

    await refused(
        server, lambda: create(strict, environment_id, agent=agent), anthropic.NotFoundError
    )


async def test_a_user_message_with_a_non_text_block_is_refused(
    server: ServerProcess, strict: anthropic.AsyncAnthropic, environment_id: str
) -> None:
    session = await create(strict, environment_id)
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    events = [{"type": "user.message", "content": [{"type": "text", "text": "see"}, image]}]

    caught = await refused(
        server,
        lambda: strict.beta.sessions.events.send(session.id, events=events),
        anthropic.BadRequestError,
    )

    assert error_of(caught)["param"] == "events[0].content[1].type"


async def test_a_body_over_the_servers_limit_is_refused(
    server: ServerProcess, strict: anthropic.AsyncAnthropic, environment_id: str
) -> None:
    session = await create(strict, environment_id)
    huge = "x" * (MAX_BODY_BYTES + 1)

    await refused(
        server,
        lambda: strict.beta.sessions.events.send(session.id, events=said(huge)),
        anthropic.ContentTooLargeError,
    )


async def test_a_wrong_api_key_is_refused(server_factory: ServerFactory) -> None:
    keyed = server_factory({"PARLEY_API_KEYS": "right-key=alice"})
    right = client_of(keyed, key="right-key", retries=0)
    environment = await right.beta.environments.create(name="keyed")
    wrong = client_of(keyed, key="wrong-key", retries=0)

    caught = await refused(
        keyed, lambda: create(wrong, environment.id), anthropic.AuthenticationError
    )

    assert error_of(caught)["type"] == "authentication_error"


async def test_a_session_in_another_principals_environment_is_refused(
    server_factory: ServerFactory,
) -> None:
    keyed = server_factory({"PARLEY_API_KEYS": "k-alice=alice,k-bob=bob"})
    alice = client_of(keyed, key="k-alice", retries=0)
    environment = await alice.beta.environments.create(name="alice's")
    bob = client_of(keyed, key="k-bob", retries=0)

    caught = await refused(keyed, lambda: create(bob, environment.id), anthropic.NotFoundError)

    assert error_of(caught)["details"] == {"error_code": "environment_not_found"}


async def test_a_second_user_message_while_a_turn_runs_is_a_conflict(
    strict: anthropic.AsyncAnthropic, environment_id: str, http: httpx.AsyncClient
) -> None:
    session = await create(strict, environment_id)
    await strict.beta.sessions.events.send(session.id, events=said(words(40)))

    with pytest.raises(anthropic.ConflictError) as caught:
        await strict.beta.sessions.events.send(session.id, events=said("me too"))

    assert error_of(caught.value)["type"] == "conflict_error"
    stream = await strict.beta.sessions.events.stream(session.id)
    await until_idle(stream)
    await stream.close()
    assert [x["userInput"]["text"] for x in await exchanges(http, session.id)] == [words(40)]


# --- one conversation, every surface -----------------------------------------------------


async def test_a_session_made_here_continues_on_the_native_api_and_its_usage_agrees(
    sdk: anthropic.AsyncAnthropic, environment_id: str, http: httpx.AsyncClient
) -> None:
    session = await create(sdk, environment_id)
    sid = session.id.removeprefix("sess_")

    ran = await http.post(
        f"/v1/sessions/{sid}/blockingContinue", json={"userInput": {"text": "hello there"}}
    )
    native = (await http.get(f"/v1/sessions/{sid}")).json()["usage"]
    mine = (await sdk.beta.sessions.retrieve(session.id)).usage
    listed = [e async for e in sdk.beta.sessions.events.list(session.id)]

    assert ran.status_code == 200, ran.text
    assert (mine.input_tokens, mine.output_tokens, mine.cache_read_input_tokens) == (
        native["inputTokens"],
        native["outputTokens"],
        native["cacheReadInputTokens"],
    )
    assert mine.cache_creation is not None
    split = mine.cache_creation
    written = (split.ephemeral_5m_input_tokens or 0) + (split.ephemeral_1h_input_tokens or 0)
    assert written == native["cacheCreationInputTokens"]
    assert native["outputTokens"] > 0
    assert [e.type for e in listed] == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.status_idle",
    ]
    assert listed[3].content[0].text == expected_reply("echo", "hello there")


async def test_the_event_list_pages_oldest_first_and_filters_by_type(
    sdk: anthropic.AsyncAnthropic, environment_id: str
) -> None:
    session = await create(sdk, environment_id)
    turns = [await turn(sdk, session.id, text) for text in ("one", "two", "three")]

    every = [e async for e in sdk.beta.sessions.events.list(session.id, limit=4)]
    messages = [
        e.content[0].text
        async for e in sdk.beta.sessions.events.list(session.id, types=["agent.message"], limit=1)
    ]

    assert [t[0].type for t in turns] == ["session.status_running"] * 3  # after user.message
    assert len(every) == 18 and len({e.id for e in every}) == 18
    assert [e.type for e in every[:6]] == [e.type for e in every[12:]]
    assert messages == ["one", "two", "three"]


async def test_once_a_turns_replay_log_expires_its_history_carries_whole_events_only(
    server: ServerProcess, http: httpx.AsyncClient, environment_id: str
) -> None:
    session = await qoder_session(http, environment_id, incremental_streaming_enabled=True)
    sent = await qoder_say(http, session["id"], "short lived")
    await read_frames(http, session["id"], stop=idle)
    sid, xid = session["id"].removeprefix("sess_"), sent["turn_id"].removeprefix("turn_")
    redis = Redis.from_url(server.redis_url)
    try:
        assert await redis.delete(Keys(server.key_prefix).log(sid, xid)) == 1
    finally:
        await redis.aclose()

    frames = await read_frames(http, session["id"], stop=idle)

    assert [f.event for f in frames] == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.status_idle",
    ]
    assert frames[3].json()["content"][0]["text"] == "short lived"


# --- the rest of a session's life ------------------------------------------------------------


async def test_an_update_sets_the_title_and_a_null_metadata_value_deletes_its_key(
    sdk: anthropic.AsyncAnthropic, environment_id: str
) -> None:
    session = await sdk.beta.sessions.create(
        agent="echo", environment_id=environment_id, metadata={"keep": "1", "drop": "2"}
    )

    updated = await sdk.beta.sessions.update(
        session.id, title="renamed", metadata={"drop": None, "new": "3"}
    )

    assert updated.title == "renamed"
    assert updated.metadata == {"keep": "1", "new": "3"}
    assert (await sdk.beta.sessions.retrieve(session.id)).metadata == updated.metadata


async def test_an_archived_session_leaves_the_list_unless_asked_for_and_takes_no_turns(
    sdk: anthropic.AsyncAnthropic, strict: anthropic.AsyncAnthropic, environment_id: str
) -> None:
    agent = await sdk.beta.agents.create(model="synthetic-echo", name="archived")
    session = await create(sdk, environment_id, agent=agent.id)

    archived = await sdk.beta.sessions.archive(session.id)
    listed = [s.id async for s in sdk.beta.sessions.list(agent_id=agent.id)]
    everything = [
        s.id async for s in sdk.beta.sessions.list(agent_id=agent.id, include_archived=True)
    ]

    assert archived.archived_at is not None
    assert (listed, everything) == ([], [session.id])
    with pytest.raises(anthropic.BadRequestError):
        await strict.beta.sessions.events.send(session.id, events=said("hello?"))


async def test_qoders_cancel_answers_canceling_while_a_turn_runs_and_idle_when_none_does(
    http: httpx.AsyncClient, environment_id: str
) -> None:
    session = await qoder_session(http, environment_id)
    url = f"{QODER}/sessions/{session['id']}/cancel"
    await qoder_say(http, session["id"], words(100))

    running = await http.post(url)
    frames = await read_frames(http, session["id"], stop=idle)
    resting = await http.post(url)

    assert (running.status_code, running.json()["status"]) == (202, "canceling")
    assert frames[-1].json()["stop_reason"] == {"type": "interrupted"}
    assert (resting.status_code, resting.json()) == (
        200,
        {"id": session["id"], "type": "session", "status": "idle"},
    )


async def test_deleting_a_session_ends_its_open_streams_with_session_deleted(
    http: httpx.AsyncClient, environment_id: str
) -> None:
    session = await qoder_session(http, environment_id)
    await qoder_say(http, session["id"], "bye")
    reading = asyncio.create_task(
        read_frames(http, session["id"], stop=lambda frames: frames[-1].event == "session.deleted")
    )
    await asyncio.sleep(0.5)

    deleted = await http.delete(f"{QODER}/sessions/{session['id']}")
    frames = await reading

    assert deleted.json() == {"id": session["id"], "type": "session_deleted"}
    assert frames[-2].event == "session.status_idle"
    assert frames[-1].json()["session_id"] == session["id"]


# --- lists, cursors and bodies, as the OpenAPI document states them ------------------------


async def test_empty_cursor_agent_and_status_values_list_sessions_as_if_none_were_given(
    http: httpx.AsyncClient, environment_id: str
) -> None:
    await qoder_session(http, environment_id)
    empty = {"page": "", "after_id": "", "before_id": "", "agent_id": "", "statuses[]": ""}

    plain = await http.get(f"{QODER}/sessions", params={"limit": 100})
    given = await http.get(f"{QODER}/sessions", params={"limit": 100, **empty})

    assert given.status_code == 200, given.text
    assert [s["id"] for s in given.json()["data"]] == [s["id"] for s in plain.json()["data"]]


async def test_sessions_after_one_the_caller_does_not_have_are_not_found_naming_after_id(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get(f"{QODER}/sessions", params={"after_id": "sess_nope"})

    error = response.json()["error"]
    assert (response.status_code, error["type"], error["param"]) == (
        404,
        "not_found_error",
        "after_id",
    )
    assert "'sess_nope'" in error["message"]


async def test_sessions_after_text_that_is_no_session_id_are_refused_naming_its_value(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get(f"{QODER}/sessions", params={"after_id": "^"})

    error = response.json()["error"]
    assert (response.status_code, error["param"]) == (400, "after_id")
    assert "'^'" in error["message"] and "sess_" in error["message"]


async def test_a_session_page_naming_no_session_goes_on_from_its_creation_time(
    http: httpx.AsyncClient, environment_id: str
) -> None:
    """Newest first, so a page after a time far ahead holds every session; none is named."""
    await qoder_session(http, environment_id)

    plain = await http.get(f"{QODER}/sessions", params={"limit": 100})
    ahead = await http.get(
        f"{QODER}/sessions", params={"limit": 100, "page": "after.99999999999999.none"}
    )

    assert ahead.status_code == 200, ahead.text
    assert [s["id"] for s in ahead.json()["data"]] == [s["id"] for s in plain.json()["data"]]


async def test_a_next_page_of_sessions_is_after_the_last_ones_time_and_id(
    http: httpx.AsyncClient, environment_id: str
) -> None:
    for _ in range(2):
        await qoder_session(http, environment_id)

    first = (await http.get(f"{QODER}/sessions", params={"limit": 1})).json()

    direction, created_ms, sid = first["next_page"].split(".")
    assert (direction, f"sess_{sid}") == ("after", first["last_id"]) and created_ms.isdigit()


async def test_a_whole_number_written_as_a_float_is_read_as_the_integer_it_is(
    http: httpx.AsyncClient, environment_id: str
) -> None:
    session = await qoder_session(http, environment_id, delta_flush_interval_ms=250.0)

    assert session["delta_flush_interval_ms"] == 250


async def test_an_update_answers_200_with_the_session(
    http: httpx.AsyncClient, environment_id: str
) -> None:
    session = await qoder_session(http, environment_id)

    updated = await http.post(f"{QODER}/sessions/{session['id']}", json={"title": "renamed"})

    assert (updated.status_code, updated.json()["title"]) == (200, "renamed")


async def test_a_feature_parley_lacks_is_a_501_the_sdk_does_not_retry(
    http: httpx.AsyncClient, environment_id: str
) -> None:
    body = {"agent": "echo", "environment_id": environment_id, "budget": {"max_usd": 1}}

    response = await http.post(f"{QODER}/sessions", json=body)

    assert response.status_code == 501
    assert response.json()["error"]["type"] == "feature_not_available"
    assert response.headers["x-should-retry"] == "false"


async def test_an_event_whose_type_is_no_string_is_refused_naming_it(
    http: httpx.AsyncClient, environment_id: str
) -> None:
    session = await qoder_session(http, environment_id)

    response = await http.post(
        f"{QODER}/sessions/{session['id']}/events", json={"events": [{"type": {}}]}
    )

    assert (response.status_code, response.json()["error"]["param"]) == (400, "events[0].type")


async def test_events_after_a_turn_the_session_never_had_are_not_found_naming_after_id(
    http: httpx.AsyncClient, environment_id: str
) -> None:
    session = await qoder_session(http, environment_id)

    response = await http.get(
        f"{QODER}/sessions/{session['id']}/events", params={"after_id": "evt_nope_09"}
    )

    error = response.json()["error"]
    assert (response.status_code, error["type"], error["param"]) == (
        404,
        "not_found_error",
        "after_id",
    )


async def test_events_after_text_that_is_no_event_id_are_refused_naming_its_value(
    http: httpx.AsyncClient, environment_id: str
) -> None:
    session = await qoder_session(http, environment_id)

    response = await http.get(f"{QODER}/sessions/{session['id']}/events", params={"page": "0"})

    error = response.json()["error"]
    assert (response.status_code, error["param"]) == (400, "page")
    assert "'0'" in error["message"] and "evt_" in error["message"]


async def test_an_events_next_page_is_the_id_of_the_last_event_listed(
    http: httpx.AsyncClient, environment_id: str
) -> None:
    session = await qoder_session(http, environment_id)
    await qoder_say(http, session["id"], "page me")
    await read_frames(http, session["id"], stop=idle)
    url = f"{QODER}/sessions/{session['id']}/events"

    first = (await http.get(url, params={"limit": 2})).json()
    rest = (await http.get(url, params={"limit": 100, "page": first["next_page"]})).json()
    every = (await http.get(url, params={"limit": 100})).json()

    assert first["next_page"] == first["last_id"]
    ids = [e["id"] for e in every["data"]]
    assert [e["id"] for e in first["data"] + rest["data"]] == ids


async def test_a_stream_resumed_after_a_turn_the_session_never_had_is_not_found(
    http: httpx.AsyncClient, environment_id: str
) -> None:
    session = await qoder_session(http, environment_id)

    response = await http.get(
        f"{QODER}/sessions/{session['id']}/events/stream",
        headers={"Last-Event-ID": "evt_nope_09"},
    )

    error = response.json()["error"]
    assert (response.status_code, error["param"]) == (404, "Last-Event-ID")
