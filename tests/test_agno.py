"""Agno AgentOS, driven by agno's own ``AgentOSClient`` against a real uvicorn process, and by
raw httpx where the exact bytes or statuses matter: the client is the client, unchanged, so
any call it cannot make or event it cannot parse is a bug."""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from agno.client import AgentOSClient
from agno.db.base import SessionType
from agno.run.agent import (
    RunCancelledEvent,
    RunCompletedEvent,
    RunContentEvent,
    RunStartedEvent,
)
from agno.run.base import RunStatus

from tests.support.agents import agent_body, create_agent
from tests.support.agno import (
    agno_client,
    bearer,
    dashed,
    new_agent,
    open_run,
    parse_block,
    run_frames,
)
from tests.support.native import create_session, list_exchanges, snapshot, words
from tests.support.servers import ServerFactory, ServerProcess
from tests.support.upstream import Reply, UpstreamServer


@pytest.fixture
async def http(shared_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with shared_server.client() as client:
        yield client


@pytest.fixture
def agno(shared_server: ServerProcess) -> AgentOSClient:
    return agno_client(shared_server)


@pytest.fixture
def unparsed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every line agno's client logs as unparseable (it logs and skips them); must stay []."""
    logged: list[str] = []

    class Recorder:
        def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
            logged.append(message)

        def __getattr__(self, name: str) -> Callable[..., None]:
            return lambda *args, **kwargs: None

    monkeypatch.setattr("agno.utils.log.logger", Recorder())
    yield logged


async def create(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await http.post("/sessions", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def first_frame(chunks: AsyncIterator[bytes]) -> dict[str, Any]:
    """The first event of a stream left open. The caller keeps ``chunks``: an iterator let go
    of is closed, and with it the connection, which cancels the run."""
    buffer = b""
    while b"\n\n" not in buffer:
        buffer += await anext(chunks)
    return parse_block(buffer.split(b"\n\n", 1)[0], 0.0).data


# --- runs ----------------------------------------------------------------------------------


async def test_a_streamed_run_is_run_started_content_then_run_completed_in_agnos_bytes(
    http: httpx.AsyncClient,
) -> None:
    received = await run_frames(http, "echo", words(12))

    assert received.events[0] == "RunStarted"
    assert received.events[-1] == "RunCompleted"
    assert set(received.events[1:-1]) == {"RunContent"} and len(received.events) >= 4
    started = received.frames[0].data
    assert (started["agent_id"], started["agent_name"]) == ("echo", "Echo (synthetic)")
    assert (started["model"], started["model_provider"]) == ("synthetic-echo", "synthetic")
    ids = {(f.data["run_id"], f.data["session_id"], f.data["agent_id"]) for f in received.frames}
    assert len(ids) == 1
    for frame in received.frames:
        assert frame.raw == frame.as_agno_sends_it()


async def test_agnos_client_parses_every_event_and_the_text_adds_up_to_what_is_stored(
    agno: AgentOSClient, http: httpx.AsyncClient, unparsed: list[str]
) -> None:
    message = words(15, "tok")

    events = [event async for event in agno.run_agent_stream("echo", message)]

    assert isinstance(events[0], RunStartedEvent)
    assert isinstance(events[-1], RunCompletedEvent)
    assert all(isinstance(e, RunContentEvent) for e in events[1:-1]) and len(events) >= 4
    completed = events[-1]
    joined = "".join(e.content for e in events if isinstance(e, RunContentEvent))
    assert joined == completed.content == message
    assert completed.metrics is not None and completed.metrics.output_tokens == 15
    stored = await agno.get_session_run(completed.session_id, completed.run_id)
    assert (stored.status, stored.content) == ("COMPLETED", joined)
    [exchange] = await list_exchanges(http, completed.session_id)
    assert exchange["response"]["text"] == joined
    assert unparsed == []


async def test_run_content_comes_at_the_sessions_refresh_interval(
    http: httpx.AsyncClient,
) -> None:
    session = await create_session(http, agentId="echo", refreshIntervalMs=400)

    received = await run_frames(http, "echo", words(30), session_id=session["conversationId"])

    contents = [f for f in received.frames if f.event == "RunContent"]
    assert 2 <= len(contents) <= 3
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(contents)]
    assert min(gaps) >= 0.3, gaps
    assert received.content == words(30)


async def test_keepalives_are_sse_comments(server_factory: ServerFactory) -> None:
    server = server_factory({"PARLEY_KEEPALIVE_SECONDS": "0.2"})
    async with server.client() as http:
        agent = await new_agent(
            http,
            model={
                "provider": "synthetic",
                "name": "slow",
                "params": {"mode": "echo", "tokensPerSecond": 50, "firstTokenLatencyMs": 900},
            },
        )
        received = await run_frames(http, agent, "patience")

    assert received.comments and set(received.comments) == {b": ping\n\n"}
    assert received.events == ["RunStarted", "RunContent", "RunCompleted"]


async def test_a_run_with_stream_false_answers_the_finished_run_output(
    agno: AgentOSClient,
) -> None:
    output = await agno.run_agent("echo", "just this once")

    assert (output.status, output.content, output.agent_id) == (
        RunStatus.completed,
        "just this once",
        "echo",
    )
    assert output.metrics is not None and output.metrics.total_tokens > 0
    assert output.input is not None and output.input.input_content == "just this once"
    run = await agno.get_session_run(str(output.session_id), str(output.run_id))
    assert run.content == "just this once"


async def test_a_multipart_run_is_read_like_an_urlencoded_one(http: httpx.AsyncClient) -> None:
    form = {"message": (None, "sent as multipart"), "stream": (None, "false")}

    response = await http.post("/agents/echo/runs", files=form)

    assert response.request.headers["content-type"].startswith("multipart/form-data")
    assert response.status_code == 200, response.text
    assert (response.json()["content"], response.json()["status"]) == (
        "sent as multipart",
        "COMPLETED",
    )


async def test_a_run_on_a_session_already_running_one_is_409(http: httpx.AsyncClient) -> None:
    async with open_run(http, "echo", words(100)) as response:
        chunks = response.aiter_bytes()
        started = await first_frame(chunks)
        sid = started["session_id"]

        second = await http.post("/agents/echo/runs", data={"message": "me too", "session_id": sid})

        assert second.status_code == 409
        assert second.json() == {"detail": f"A run is already in progress in session {sid}"}
        cancel = f"/agents/echo/runs/{started['run_id']}/cancel"
        assert (await http.post(cancel, params={"session_id": sid})).json() == {}


async def test_a_failing_model_ends_the_stream_with_run_error(
    parley: ServerProcess, upstream: UpstreamServer
) -> None:
    upstream.reset()
    upstream.queue(Reply(pieces=("So", " far", " so", " good"), malformed_after=2))
    async with parley.client() as http:
        agent = await create_agent(http, **agent_body("openai"))

        received = await run_frames(http, agent["agentId"], "fail me")

    assert received.events[0] == "RunStarted" and received.events[-1] == "RunError"
    assert set(received.events[1:-1]) == {"RunContent"}
    error = received.last("RunError")
    assert error.data["error_type"] == "upstream_bad_response" and error.data["content"]
    assert error.raw == error.as_agno_sends_it()
    assert received.content == "So far"


# --- cancel --------------------------------------------------------------------------------


async def test_cancelling_a_run_mid_stream_ends_it_cancelled_with_its_partial_text(
    agno: AgentOSClient, http: httpx.AsyncClient, unparsed: list[str]
) -> None:
    agent = await new_agent(http)
    message = words(150)
    events: list[Any] = []
    enough = asyncio.Event()

    async def read() -> None:
        async for event in agno.run_agent_stream(agent, message):
            events.append(event)
            if sum(isinstance(e, RunContentEvent) for e in events) >= 2:
                enough.set()

    reading = asyncio.create_task(read())
    await asyncio.wait_for(enough.wait(), 10)
    run_id, sid = events[0].run_id, events[0].session_id

    await agno.cancel_agent_run(agent, run_id)  # no session_id, as the client sends it
    await asyncio.wait_for(reading, 10)

    assert isinstance(events[-1], RunCancelledEvent)
    partial = "".join(e.content for e in events if isinstance(e, RunContentEvent))
    assert partial and message.startswith(partial) and partial != message
    assert events[-1].content == partial
    run = await agno.get_session_run(sid, run_id)
    assert (run.status, run.content) == ("CANCELLED", partial)
    after = await agno.run_agent(agent, "and now", session_id=sid)
    assert (after.status, after.content) == (RunStatus.completed, "and now")
    assert unparsed == []


async def test_a_client_that_drops_the_stream_cancels_the_run_as_agentos_does(
    agno: AgentOSClient, http: httpx.AsyncClient
) -> None:
    async with open_run(http, "echo", words(100)) as response:
        chunks = response.aiter_bytes()
        started = await first_frame(chunks)
    await chunks.aclose()

    for _ in range(100):
        run = await agno.get_session_run(started["session_id"], started["run_id"])
        if run.status != "RUNNING":
            break
        await asyncio.sleep(0.05)
    assert run.status == "CANCELLED"
    assert isinstance(run.content, str) and len(run.content) < len(words(100))


async def test_cancelling_an_unknown_or_finished_run_answers_an_empty_object(
    agno: AgentOSClient, http: httpx.AsyncClient
) -> None:
    done = await agno.run_agent("echo", "finished already")

    unknown = await http.post(f"/agents/echo/runs/{uuid.uuid4()}/cancel")
    finished = await http.post(
        f"/agents/echo/runs/{done.run_id}/cancel", params={"session_id": done.session_id}
    )

    assert (unknown.status_code, unknown.json()) == (200, {})
    assert (finished.status_code, finished.json()) == (200, {})
    run = await agno.get_session_run(str(done.session_id), str(done.run_id))
    assert run.status == "COMPLETED"


# --- sessions ------------------------------------------------------------------------------


async def test_listing_filters_by_agent_user_and_name_with_exact_totals(
    agno: AgentOSClient, http: httpx.AsyncClient
) -> None:
    agent = await new_agent(http)
    for name, user in [
        ("Alpha trip", "u1"),
        ("beta TRIP", "u2"),
        ("gamma", "u1"),
        ("trip 4", "u1"),
    ]:
        await agno.create_session(agent_id=agent, session_name=name, user_id=user)

    page = await agno.get_sessions(component_id=agent, user_id="u1", session_name="trip")
    everything = await agno.get_sessions(component_id=agent)

    assert sorted(s.session_name for s in page.data) == ["Alpha trip", "trip 4"]
    assert (page.meta.total_count, page.meta.total_pages) == (2, 1)
    assert everything.meta.total_count == 4
    assert {s.agent_id for s in everything.data} == {agent}


async def test_listing_sorts_and_pages_by_number_with_exact_totals(
    agno: AgentOSClient, http: httpx.AsyncClient
) -> None:
    agent = await new_agent(http)
    created = [
        (await agno.create_session(agent_id=agent, session_name=name)).session_id
        for name in ["s3", "S1", "s5", "s2", "s4"]
    ]

    by_name = await agno.get_sessions(
        component_id=agent, sort_by="session_name", sort_order="asc", limit=2, page=2
    )
    newest = await agno.get_sessions(component_id=agent, limit=2)
    last = await agno.get_sessions(component_id=agent, sort_order="asc", limit=2, page=3)

    assert [s.session_name for s in by_name.data] == ["s3", "s4"]
    assert (by_name.meta.page, by_name.meta.limit) == (2, 2)
    assert (by_name.meta.total_count, by_name.meta.total_pages) == (5, 3)
    assert [s.session_id for s in newest.data] == created[::-1][:2]
    assert [s.session_id for s in last.data] == created[4:]


async def test_page_zero_is_read_as_the_first_page(http: httpx.AsyncClient) -> None:
    agent = await new_agent(http)
    for _ in range(3):
        await create(http, agent_id=agent)

    zero = await http.get("/sessions", params={"component_id": agent, "limit": 2, "page": 0})
    one = await http.get("/sessions", params={"component_id": agent, "limit": 2, "page": 1})

    assert zero.json()["data"] == one.json()["data"]
    assert zero.json()["meta"]["page"] == 0 and zero.json()["meta"]["total_count"] == 3


async def test_team_and_workflow_listings_are_empty(http: httpx.AsyncClient) -> None:
    for kind in ("team", "workflow"):
        response = await http.get("/sessions", params={"type": kind})

        assert response.status_code == 200
        assert response.json()["data"] == []
        assert response.json()["meta"]["total_count"] == 0


async def test_creating_a_session_answers_201_with_its_detail(
    agno: AgentOSClient, http: httpx.AsyncClient
) -> None:
    sid = uuid.uuid4()

    body = await create(
        http,
        session_id=str(sid),
        session_name="Planning",
        session_state={"step": 1, "cart": ["tea"]},
        metadata={"source": "test"},
        user_id="u-create",
        agent_id="echo",
    )
    read = await agno.get_session(str(sid))

    assert (body["session_id"], body["agent_session_id"]) == (sid.hex, sid.hex)
    assert (body["session_name"], body["user_id"], body["agent_id"]) == (
        "Planning",
        "u-create",
        "echo",
    )
    assert (body["session_state"], body["metadata"]) == (
        {"step": 1, "cart": ["tea"]},
        {"source": "test"},
    )
    assert body["chat_history"] == []
    assert read.session_name == "Planning" and read.session_state == {"step": 1, "cart": ["tea"]}


async def test_creating_a_session_with_an_id_in_use_is_409_and_changes_nothing(
    http: httpx.AsyncClient, shared_server: ServerProcess
) -> None:
    first = await create(http, session_name="first")
    before = await snapshot(shared_server.redis_url, shared_server.key_prefix)

    again = await http.post(
        "/sessions", json={"session_id": first["session_id"], "session_name": "x"}
    )

    assert again.status_code == 409
    assert again.json() == {
        "detail": f"Session with id '{first['session_id']}' already exists. "
        f"Use PATCH /sessions/{first['session_id']} to update it."
    }
    assert await snapshot(shared_server.redis_url, shared_server.key_prefix) == before


async def test_an_untitled_session_is_named_by_its_first_message(
    agno: AgentOSClient, http: httpx.AsyncClient
) -> None:
    agent = await new_agent(http)
    done = await agno.run_agent(agent, "what is on today")
    await agno.run_agent(agent, "and tomorrow", session_id=done.session_id)

    listed = await agno.get_sessions(component_id=agent)
    detail = await agno.get_session(str(done.session_id))

    assert [s.session_name for s in listed.data] == ["what is on today"]
    assert detail.session_name == "what is on today"
    assert (await agno.rename_session(str(done.session_id), "Plans")).session_name == "Plans"


async def test_a_sessions_detail_holds_its_chat_history(agno: AgentOSClient) -> None:
    first = await agno.run_agent("echo", "first words")
    await agno.run_agent("echo", "second words", session_id=first.session_id)

    detail = await agno.get_session(str(first.session_id))

    assert detail.chat_history is not None
    assert [(m["role"], m["content"]) for m in detail.chat_history] == [
        ("user", "first words"),
        ("assistant", "first words"),
        ("user", "second words"),
        ("assistant", "second words"),
    ]
    assert detail.total_tokens == detail.metrics["total_tokens"] > 0  # type: ignore[index]


async def test_runs_and_a_run_by_id_carry_status_input_content_and_metrics(
    agno: AgentOSClient,
) -> None:
    first = await agno.run_agent("echo", "one two three")
    await agno.run_agent("echo", "four", session_id=first.session_id)

    runs = await agno.get_session_runs(str(first.session_id))
    one = await agno.get_session_run(str(first.session_id), str(first.run_id))

    assert [(r.status, r.run_input, r.content) for r in runs] == [
        ("COMPLETED", "one two three", "one two three"),
        ("COMPLETED", "four", "four"),
    ]
    assert one == runs[0]
    metrics = one.metrics or {}
    assert metrics["output_tokens"] == 3
    assert metrics["total_tokens"] == metrics["input_tokens"] + metrics["output_tokens"]
    assert 0 < metrics["time_to_first_token"] <= metrics["duration"]
    assert one.created_at is not None


async def test_a_session_is_renamed_by_post_and_by_put(
    agno: AgentOSClient, http: httpx.AsyncClient
) -> None:
    sid = (await create(http, session_name="old"))["session_id"]

    posted = await agno.rename_session(sid, "by post")
    put = await http.put(f"/sessions/{sid}/rename", json={"session_name": "by put"})

    assert posted.session_name == "by post"
    assert (put.status_code, put.json()["session_name"]) == (200, "by put")
    native = (await http.get(f"/v1/sessions/{sid}")).json()
    assert native["title"] == "by put"


async def test_patch_changes_a_sessions_name_state_and_metadata(
    agno: AgentOSClient, http: httpx.AsyncClient
) -> None:
    sid = (await create(http, session_name="before", session_state={"n": 1}))["session_id"]

    patched = await agno.update_session(
        sid, session_name="after", session_state={"n": 2, "seen": [1]}, metadata={"tier": "gold"}
    )
    name_only = await agno.update_session(sid, session_name="again")

    assert (patched.session_name, patched.session_state, patched.metadata) == (
        "after",
        {"n": 2, "seen": [1]},
        {"tier": "gold"},
    )
    assert (name_only.session_state, name_only.metadata) == (
        {"n": 2, "seen": [1]},
        {"tier": "gold"},
    )
    native = (await http.get(f"/v1/sessions/{sid}")).json()
    assert (native["title"], native["metadata"]) == ("again", {"tier": "gold"})


async def test_deleting_a_session_is_204_and_it_is_gone_everywhere(
    agno: AgentOSClient, http: httpx.AsyncClient
) -> None:
    done = await agno.run_agent("echo", "soon gone")
    sid = str(done.session_id)

    response = await http.delete(f"/sessions/{sid}")

    assert (response.status_code, response.content) == (204, b"")
    assert (await http.get(f"/sessions/{sid}")).status_code == 404
    assert (await http.get(f"/v1/sessions/{sid}")).status_code == 404
    assert (await http.delete(f"/sessions/{sid}")).status_code == 204  # as Agno: no error


async def test_deleting_several_sessions_deletes_each_named(
    agno: AgentOSClient, http: httpx.AsyncClient
) -> None:
    a, b, kept = [(await create(http))["session_id"] for _ in range(3)]

    await agno.delete_sessions([a, dashed(b)], [SessionType.AGENT, SessionType.AGENT])

    assert [(await http.get(f"/sessions/{sid}")).status_code for sid in (a, b, kept)] == [
        404,
        404,
        200,
    ]


async def test_deleting_sessions_with_unequal_lists_is_400_and_deletes_nothing(
    http: httpx.AsyncClient,
) -> None:
    sid = (await create(http))["session_id"]
    body = {"session_ids": [sid], "session_types": ["agent", "agent"]}

    response = await http.request("DELETE", "/sessions", json=body)

    assert response.status_code == 400
    assert response.json() == {"detail": "Session IDs and session types must have the same length"}
    assert (await http.get(f"/sessions/{sid}")).status_code == 200


async def test_a_dashed_uuid_names_the_same_session_and_run_as_its_undashed_form(
    agno: AgentOSClient, http: httpx.AsyncClient
) -> None:
    sid = (await create(http, agent_id="echo"))["session_id"]
    first = await agno.run_agent("echo", "by dashed id", session_id=dashed(sid))

    undashed = (await http.get(f"/sessions/{sid}")).json()
    with_dashes = (await http.get(f"/sessions/{dashed(sid)}")).json()
    run = await agno.get_session_run(dashed(sid), dashed(str(first.run_id)))

    assert first.session_id == sid
    assert undashed == with_dashes
    assert [m["content"] for m in undashed["chat_history"]] == ["by dashed id"] * 2
    assert run.run_id == first.run_id


# --- errors --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    method: str
    path: str
    status: int
    detail: str | None = None  # None: a 422 list of {loc, msg, type}
    options: tuple[tuple[str, Any], ...] = ()


BAD_REQUESTS = {
    "unknown session": Bad("GET", "/sessions/nope", 404, "Session with id 'nope' not found"),
    "unknown run": Bad(
        "GET", "/sessions/{sid}/runs/nope", 404, "Run with ID nope not found in session {sid}"
    ),
    "unknown session's runs": Bad(
        "GET", "/sessions/nope/runs", 404, "Session with id 'nope' not found"
    ),
    "rename unknown": Bad(
        "POST",
        "/sessions/nope/rename",
        404,
        "Session with id 'nope' not found",
        (("json", {"session_name": "x"}),),
    ),
    "rename to empty": Bad(
        "POST",
        "/sessions/{sid}/rename",
        400,
        "Session name cannot be empty",
        (("json", {"session_name": " "}),),
    ),
    "unknown agent": Bad(
        "POST", "/agents/nope/runs", 404, "Agent not found", (("data", {"message": "hi"}),)
    ),
    "unknown agent shown": Bad("GET", "/agents/nope", 404, "Agent not found"),
    "unknown agent's cancel": Bad("POST", "/agents/nope/runs/r1/cancel", 404, "Agent not found"),
    "name of the wrong type": Bad("POST", "/sessions", 422, None, (("json", {"session_name": 5}),)),
    "metadata not strings": Bad(
        "PATCH", "/sessions/{sid}", 422, None, (("json", {"metadata": {"k": 1}}),)
    ),
    "state too large": Bad(
        "PATCH",
        "/sessions/{sid}",
        400,
        "session_state is larger than 65536 bytes as JSON",
        (("json", {"session_state": {"x": "y" * 70_000}}),),
    ),
    "limit 0": Bad("GET", "/sessions", 422, None, (("params", {"limit": 0}),)),
    "page -1": Bad("GET", "/sessions", 422, None, (("params", {"page": -1}),)),
    "unknown sort": Bad("GET", "/sessions", 422, None, (("params", {"sort_by": "colour"}),)),
    "unknown type": Bad("GET", "/sessions", 422, None, (("params", {"type": "crew"}),)),
    "run without message": Bad(
        "POST", "/agents/echo/runs", 422, None, (("data", {"stream": "false"}),)
    ),
    "stream not a boolean": Bad(
        "POST", "/agents/echo/runs", 422, None, (("data", {"message": "hi", "stream": "maybe"}),)
    ),
    "empty message": Bad(
        "POST",
        "/agents/echo/runs",
        400,
        "message must not be empty",
        (("data", {"message": " ", "stream": "false"}),),
    ),
    "a file upload": Bad(
        "POST",
        "/agents/echo/runs",
        400,
        "Parley takes text only: file uploads are not supported",
        (("files", {"files": ("a.txt", b"hi")}), ("data", {"message": "hi"})),
    ),
    "malformed JSON": Bad(
        "POST",
        "/sessions",
        422,
        None,
        (("content", b"{nope"), ("headers", {"content-type": "application/json"})),
    ),
    "oversized body": Bad(
        "POST",
        "/agents/echo/runs",
        413,
        "the request body is larger than the server accepts",
        (("data", {"message": "x" * 1_100_000}),),
    ),
    "unknown route": Bad("GET", "/sessions/{sid}/nothing/here", 404, "Not Found"),
    "wrong method": Bad("PUT", "/sessions", 405, "Method Not Allowed"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
async def test_bad_requests_get_agnos_error_shape_and_change_nothing(
    case: Bad, http: httpx.AsyncClient, shared_server: ServerProcess
) -> None:
    sid = (await create(http, session_name="untouched"))["session_id"]
    before = await snapshot(shared_server.redis_url, shared_server.key_prefix)
    options = {name: value for name, value in case.options}

    response = await http.request(case.method, case.path.format(sid=sid), **options)

    assert response.status_code == case.status, response.text
    detail = response.json()["detail"]
    if case.detail is None:
        assert detail and all(set(item) == {"loc", "msg", "type"} for item in detail), detail
    else:
        assert detail == case.detail.format(sid=sid)
    assert await snapshot(shared_server.redis_url, shared_server.key_prefix) == before


async def test_keys_are_checked_with_agnos_messages(server_factory: ServerFactory) -> None:
    server = server_factory({"PARLEY_API_KEYS": "right-key=alice"})
    agno = agno_client(server)
    async with server.client() as http:
        missing = await http.get("/sessions")
        wrong = await http.get("/sessions", headers=bearer("wrong-key"))
        basic = await http.get("/sessions", headers={"Authorization": "Basic abc"})

    created = await agno.create_session(session_name="keyed", headers=bearer("right-key"))
    listed = await agno.get_sessions(headers=bearer("right-key"))

    assert (missing.status_code, missing.json()) == (
        401,
        {"detail": "Authorization header required"},
    )
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "Invalid authentication token"})
    assert (basic.status_code, basic.json()) == (401, {"detail": "Authorization header required"})
    assert [s.session_id for s in listed.data] == [created.session_id]


# --- one session, every API ----------------------------------------------------------------


async def test_an_agno_run_continues_a_native_session_and_both_apis_agree(
    agno: AgentOSClient, http: httpx.AsyncClient
) -> None:
    native = await create_session(http, agentId="echo", title="started natively")
    sid = native["conversationId"]
    await http.post(
        f"/v1/sessions/{sid}/blockingContinue", json={"userInput": {"text": "native turn"}}
    )

    events = [e async for e in agno.run_agent_stream("echo", "agno turn", session_id=dashed(sid))]

    completed = events[-1]
    assert isinstance(completed, RunCompletedEvent) and completed.session_id == sid
    session = (await http.get(f"/v1/sessions/{sid}")).json()
    exchanges = await list_exchanges(http, sid)
    detail = await agno.get_session(sid)
    runs = await agno.get_session_runs(sid)
    assert detail.session_name == "started natively"
    assert [(x["userInput"]["text"], x["response"]["text"]) for x in exchanges] == [
        (r.run_input, r.content) for r in runs
    ]
    assert [r.run_id for r in runs] == [x["exchangeId"] for x in exchanges]
    assert detail.total_tokens == session["usage"]["totalTokens"]
    assert detail.metrics is not None
    assert detail.metrics["output_tokens"] == session["usage"]["outputTokens"]
    assert session["messageCount"] == 2


# --- agents --------------------------------------------------------------------------------


async def test_agents_are_listed_and_shown_from_the_registry(
    agno: AgentOSClient, http: httpx.AsyncClient
) -> None:
    agent = await new_agent(http, description="for listing")

    listed = await agno.list_agents()
    shown = await agno.aget_agent(agent)

    assert {"default", "echo", agent} <= {a.id for a in listed}
    assert (shown.id, shown.name, shown.description) == (agent, "Agno test agent", "for listing")
    assert shown.model is not None and shown.model.provider == "synthetic"


async def test_agno_can_be_served_alone(server_factory: ServerFactory) -> None:
    server = server_factory({"PARLEY_SURFACES": "agno"})

    async with server.client() as http:
        agno_sessions = await http.get("/sessions")
        native = await http.get("/v1/sessions")

    assert agno_sessions.status_code == 200 and agno_sessions.json()["data"] == []
    assert native.status_code == 404


# --- what the OpenAPI document says, and the server does -----------------------------------


async def operation(http: httpx.AsyncClient, method: str, path: str) -> dict[str, Any]:
    document = (await http.get("/schema/openapi.json")).json()
    found: dict[str, Any] = document["paths"][path][method]
    found["components"] = document["components"]["schemas"]
    return found


def body_schema(op: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    """The body's schema, a reference to a component followed (a null alternative dropped)."""
    schema: dict[str, Any] = op["requestBody"]["content"][media]["schema"]
    schema = next((s for s in schema.get("anyOf", []) if "$ref" in s), schema)
    return op["components"][schema["$ref"].rsplit("/", 1)[1]]  # type: ignore[no-any-return]


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The non-null alternative of ``X | None``."""
    return next((s for s in schema.get("anyOf", []) if s.get("type") != "null"), schema)


async def test_a_session_is_created_without_a_body_as_the_document_allows(
    http: httpx.AsyncClient,
) -> None:
    op = await operation(http, "post", "/sessions")

    response = await http.post("/sessions")

    assert op["requestBody"]["required"] is False
    assert response.status_code == 201 and response.json()["agent_id"] == "default"


async def test_the_document_declares_404_and_409_for_creating_a_session(
    http: httpx.AsyncClient,
) -> None:
    op = await operation(http, "post", "/sessions")
    taken = (await create(http))["session_id"]

    unknown = await http.post("/sessions", json={"agent_id": "nobody-here"})
    in_use = await http.post("/sessions", json={"session_id": taken})

    assert {"404", "409"} <= set(op["responses"])
    assert (unknown.status_code, in_use.status_code) == (404, 409)


async def test_only_agent_sessions_are_created_as_the_document_says(
    http: httpx.AsyncClient,
) -> None:
    op = await operation(http, "post", "/sessions")
    [kind] = [p for p in op["parameters"] if p["name"] == "type"]

    response = await http.post("/sessions", params={"type": "team"})

    assert kind["schema"]["enum"] == ["agent"]
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "Invalid session type: team"},
    )


async def test_the_document_says_a_session_name_is_not_blank(http: httpx.AsyncClient) -> None:
    sid = (await create(http, session_name="kept"))["session_id"]
    name = nullable(
        body_schema(await operation(http, "patch", "/sessions/{session_id}"))["properties"][
            "session_name"
        ]
    )

    response = await http.patch(f"/sessions/{sid}", json={"session_name": ""})

    assert name["minLength"] == 1 and name["allOf"] == [{"pattern": r"\S"}]
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "Session name cannot be empty"},
    )


async def test_the_document_says_metadata_keys_are_1_to_64_characters(
    http: httpx.AsyncClient,
) -> None:
    schema = body_schema(await operation(http, "post", "/sessions"))
    keys = nullable(schema["properties"]["metadata"])["propertyNames"]

    response = await http.post("/sessions", json={"metadata": {"": "v"}})

    assert (keys["minLength"], keys["maxLength"]) == (1, 64)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "metadata"]


async def test_the_document_gives_the_session_id_rule_an_empty_id_making_a_new_one(
    http: httpx.AsyncClient,
) -> None:
    schema = body_schema(await operation(http, "post", "/sessions"))
    rule = re.compile(nullable(schema["properties"]["session_id"])["pattern"])

    response = await http.post("/sessions", json={"session_id": ""})

    assert [bool(rule.search(v)) for v in ("", "a_b-1", dashed(uuid.uuid4().hex))] == [True] * 3
    assert [bool(rule.search(v)) for v in ("a b", "x" * 65, "abc\n")] == [False] * 3
    assert response.status_code == 201 and re.fullmatch(
        r"[0-9a-f]{32}", response.json()["session_id"]
    )


async def test_a_session_id_ending_in_a_line_break_is_refused_on_create(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post("/sessions", json={"session_id": "abc\n"})

    assert response.status_code == 400
    assert response.json() == {
        "detail": "session_id must be 1-64 characters of letters, digits, '-' or '_', not 'abc\\n'"
    }


async def test_a_run_naming_a_session_id_ending_in_a_line_break_is_refused(
    http: httpx.AsyncClient, shared_server: ServerProcess
) -> None:
    before = await snapshot(shared_server.redis_url, shared_server.key_prefix)

    response = await http.post(
        "/agents/echo/runs", data={"message": "hi", "stream": "false", "session_id": "abc\n"}
    )

    assert response.status_code == 400
    assert response.json()["detail"].startswith("session_id must be 1-64 characters")
    assert await snapshot(shared_server.redis_url, shared_server.key_prefix) == before


async def test_the_document_describes_the_run_form_as_agnos_client_sends_it(
    http: httpx.AsyncClient,
) -> None:
    op = await operation(http, "post", "/agents/{agent_id}/runs")
    form = body_schema(op, "application/x-www-form-urlencoded")

    assert list(op["requestBody"]["content"]) == ["application/x-www-form-urlencoded"]
    assert form["required"] == ["message"]
    assert form["properties"]["message"]["pattern"] == r"\S"
    assert all(form["properties"][m]["maxLength"] == 0 for m in ("images", "files"))
    assert "409" in op["responses"]


@pytest.mark.parametrize(
    "value",
    ["true", "False", " YES ", "on", "0", "1", "t", "n", "\ttrue\n", "", "maybe", "tru", "yes!"],
)
async def test_the_documents_stream_rule_is_how_the_server_reads_a_boolean(
    value: str, http: httpx.AsyncClient
) -> None:
    op = await operation(http, "post", "/agents/{agent_id}/runs")
    rule = body_schema(op, "application/x-www-form-urlencoded")["properties"]["stream"]["pattern"]

    response = await http.post("/agents/nobody-here/runs", data={"message": "hi", "stream": value})

    # An unknown agent is looked up after the form is read: 404 means the form was taken.
    assert response.status_code == (404 if re.search(rule, value) else 422)


async def test_the_document_says_both_lists_of_a_bulk_delete_have_the_same_length(
    http: httpx.AsyncClient,
) -> None:
    schema = body_schema(await operation(http, "delete", "/sessions"))

    assert "same length" in schema["description"]
