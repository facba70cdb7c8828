"""Palantir AIP Agents v2, driven by the official ``foundry-platform-sdk`` against a real
uvicorn process: the SDK is the client, unchanged, so any path it cannot reach is a bug."""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import foundry_sdk
import httpx
import pytest
from foundry_sdk.v2.aip_agents import errors as palantir_errors

from streams.agents import builtin_agents
from streams.backends.synthetic import SyntheticParams, synthetic_reply
from tests.support.palantir import (
    Streamed,
    agent_rid,
    conversation_id,
    foundry,
    in_thread,
    read_stream,
)
from tests.support.servers import ServerFactory, ServerProcess, ServerStartError
from tests.support.sse import stream_events

ECHO = agent_rid("echo")
LOREM = agent_rid("default")  # 80 tokens at 25 a second: a reply that lasts about 3 s


def words(count: int, stem: str = "w") -> str:
    return " ".join(f"{stem}{i}" for i in range(count))


def echo_reply(text: str) -> str:
    [agent] = [a for a in builtin_agents() if a.agent_id == "echo"]
    return synthetic_reply(text, SyntheticParams.parse(agent.model.params))


@pytest.fixture
def sdk(shared_server: ServerProcess) -> Iterator[foundry_sdk.FoundryClient]:
    yield foundry(shared_server)


@pytest.fixture
async def http(shared_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with shared_server.client() as client:
        yield client


async def new_agent(http: httpx.AsyncClient, **fields: Any) -> str:
    """A synthetic echo agent of the test's own, so listings hold only its sessions."""
    agent_id = f"pal-{uuid.uuid4().hex[:10]}"
    body = {
        "agentId": agent_id,
        "name": "Palantir test agent",
        "model": {"provider": "synthetic", "name": "synthetic-echo", "params": {"mode": "echo"}},
        **fields,
    }
    response = await http.post("/v1/agents", json=body)
    assert response.status_code == 201, response.text
    return agent_rid(agent_id)


def sessions(sdk: foundry_sdk.FoundryClient) -> Any:
    return sdk.aip_agents.Agent.Session


# --- sessions ----------------------------------------------------------------------------------


def test_a_new_session_is_at_the_agents_latest_version_with_no_messages(
    sdk: foundry_sdk.FoundryClient,
) -> None:
    session = sessions(sdk).create(ECHO, preview=True)

    assert session.rid.startswith("ri.aip-agents..session.")
    assert (session.agent_rid, session.agent_version) == (ECHO, "1.0")
    assert session.metadata.message_count == 0
    assert session.metadata.estimated_expires_time > session.metadata.created_time


def test_an_agent_version_is_accepted_as_n_or_n_dot_0(sdk: foundry_sdk.FoundryClient) -> None:
    assert sessions(sdk).create(ECHO, agent_version="1").agent_version == "1.0"
    assert sessions(sdk).create(ECHO, agent_version="1.0").agent_version == "1.0"


def test_a_malformed_agent_version_raises_invalid_agent_version(
    sdk: foundry_sdk.FoundryClient,
) -> None:
    with pytest.raises(palantir_errors.InvalidAgentVersion) as raised:
        sessions(sdk).create(ECHO, agent_version="1.5")
    assert raised.value.parameters["version"] == "1.5"


def test_a_missing_agent_version_raises_agent_version_not_found(
    sdk: foundry_sdk.FoundryClient,
) -> None:
    with pytest.raises(palantir_errors.AgentVersionNotFound):
        sessions(sdk).create(ECHO, agent_version="9.0")


def test_an_unknown_agent_raises_agent_not_found(sdk: foundry_sdk.FoundryClient) -> None:
    with pytest.raises(palantir_errors.AgentNotFound):
        sessions(sdk).create(agent_rid("no-such-agent"))


def test_get_returns_the_session_created(sdk: foundry_sdk.FoundryClient) -> None:
    created = sessions(sdk).create(ECHO)

    assert sessions(sdk).get(ECHO, created.rid) == created


def test_a_session_is_not_found_under_another_agent(sdk: foundry_sdk.FoundryClient) -> None:
    created = sessions(sdk).create(ECHO)

    with pytest.raises(palantir_errors.SessionNotFound):
        sessions(sdk).get(LOREM, created.rid)


async def test_listing_pages_through_an_agents_sessions_newest_first(
    sdk: foundry_sdk.FoundryClient, http: httpx.AsyncClient
) -> None:
    agent = await new_agent(http)
    created = [sessions(sdk).create(agent).rid for _ in range(5)]

    listed = [s.rid for s in sessions(sdk).list(agent, page_size=2)]

    assert listed == created[::-1]


async def test_the_last_page_of_a_listing_has_no_next_page_token(
    sdk: foundry_sdk.FoundryClient, http: httpx.AsyncClient
) -> None:
    agent = await new_agent(http)
    for _ in range(5):
        sessions(sdk).create(agent)
    url = f"/api/v2/aipAgents/agents/{agent}/sessions"

    pages: list[dict[str, Any]] = []
    token: str | None = None
    while not pages or token:
        params = {"pageSize": 2, **({"pageToken": token} if token else {})}
        pages.append((await http.get(url, params=params)).json())
        token = pages[-1].get("nextPageToken")

    assert [len(page["data"]) for page in pages] == [2, 2, 1]
    assert "nextPageToken" not in pages[-1]


async def test_all_sessions_lists_sessions_of_every_agent(
    sdk: foundry_sdk.FoundryClient, http: httpx.AsyncClient
) -> None:
    mine = {sessions(sdk).create(await new_agent(http)).rid for _ in range(2)}

    listed = {s.rid for s in sdk.aip_agents.Agent.all_sessions(page_size=100)}

    assert mine <= listed


def test_a_title_is_set_and_cut_at_200_characters(sdk: foundry_sdk.FoundryClient) -> None:
    created = sessions(sdk).create(ECHO)

    sessions(sdk).update_title(ECHO, created.rid, title="t" * 300)

    assert sessions(sdk).get(ECHO, created.rid).metadata.title == "t" * 200


def test_a_deleted_session_is_not_found(sdk: foundry_sdk.FoundryClient) -> None:
    created = sessions(sdk).create(ECHO)

    sessions(sdk).delete(ECHO, created.rid)

    with pytest.raises(palantir_errors.SessionNotFound):
        sessions(sdk).get(ECHO, created.rid)


# --- exchanges ---------------------------------------------------------------------------------


def test_blocking_continue_answers_the_reply_and_counts_two_messages(
    sdk: foundry_sdk.FoundryClient,
) -> None:
    created = sessions(sdk).create(ECHO)
    text = words(6)

    result = sessions(sdk).blocking_continue(
        ECHO, created.rid, user_input={"text": text}, parameter_inputs={}
    )

    assert result.agent_markdown_response == echo_reply(text)
    assert result.interrupted_output is False
    assert result.total_tokens_used == 12
    session = sessions(sdk).get(ECHO, created.rid)
    assert session.metadata.message_count == 2
    assert session.metadata.estimated_expires_time > created.metadata.estimated_expires_time


def test_content_lists_every_exchange_oldest_first(sdk: foundry_sdk.FoundryClient) -> None:
    created = sessions(sdk).create(ECHO)
    texts = [words(3, "a"), words(3, "b")]
    results = [
        sessions(sdk).blocking_continue(
            ECHO, created.rid, user_input={"text": t}, parameter_inputs={}
        )
        for t in texts
    ]

    content = sessions(sdk).Content.get(ECHO, created.rid)

    assert [e.user_input.text for e in content.exchanges] == texts
    assert [e.result for e in content.exchanges] == results


def test_string_parameters_are_accepted(sdk: foundry_sdk.FoundryClient) -> None:
    created = sessions(sdk).create(ECHO)

    result = sessions(sdk).blocking_continue(
        ECHO,
        created.rid,
        user_input={"text": "hello"},
        parameter_inputs={"tone": {"type": "string", "value": "dry"}},
    )

    assert result.agent_markdown_response == echo_reply("hello")


def test_an_object_set_parameter_raises_invalid_parameter_type(
    sdk: foundry_sdk.FoundryClient,
) -> None:
    created = sessions(sdk).create(ECHO)
    object_set = {
        "type": "objectSet",
        "objectSet": {"type": "base", "objectType": "Employee"},
        "ontology": "ri.ontology.main.ontology.00000000-0000-0000-0000-000000000000",
    }

    with pytest.raises(palantir_errors.InvalidParameterType) as raised:
        sessions(sdk).blocking_continue(
            ECHO, created.rid, user_input={"text": "hi"}, parameter_inputs={"team": object_set}
        )
    assert raised.value.parameters["receivedType"] == "objectSet"


async def test_an_input_over_the_agents_budget_raises_context_size_exceeded_limit(
    sdk: foundry_sdk.FoundryClient, http: httpx.AsyncClient
) -> None:
    agent = await new_agent(http, contextBudgetTokens=5)
    created = sessions(sdk).create(agent)

    with pytest.raises(palantir_errors.ContextSizeExceededLimit):
        sessions(sdk).blocking_continue(
            agent, created.rid, user_input={"text": words(20)}, parameter_inputs={}
        )


def test_a_trace_is_complete_once_its_exchange_is(sdk: foundry_sdk.FoundryClient) -> None:
    created = sessions(sdk).create(ECHO)
    result = sessions(sdk).blocking_continue(
        ECHO, created.rid, user_input={"text": "hi"}, parameter_inputs={}
    )

    trace = sessions(sdk).SessionTrace.get(ECHO, created.rid, result.session_trace_id)

    assert (trace.id, trace.status, trace.tool_call_groups) == (
        result.session_trace_id,
        "COMPLETE",
        [],
    )


def test_an_unknown_trace_raises_session_trace_not_found(sdk: foundry_sdk.FoundryClient) -> None:
    created = sessions(sdk).create(ECHO)

    with pytest.raises(palantir_errors.SessionTraceNotFound):
        sessions(sdk).SessionTrace.get(ECHO, created.rid, str(uuid.uuid4()))


def test_rag_context_is_empty(sdk: foundry_sdk.FoundryClient) -> None:
    created = sessions(sdk).create(ECHO)

    contexts = sessions(sdk).rag_context(
        ECHO, created.rid, user_input={"text": "hi"}, parameter_inputs={}
    )

    assert (contexts.object_contexts, contexts.function_retrieved_contexts) == ([], [])


# --- streaming ---------------------------------------------------------------------------------


def test_streamed_bytes_arrive_at_the_interval_and_join_to_the_stored_reply(
    sdk: foundry_sdk.FoundryClient,
) -> None:
    created = sessions(sdk).create(ECHO)
    text = words(40)

    streamed = read_stream(sdk, ECHO, created.rid, text)

    assert streamed.text == echo_reply(text)
    assert len(streamed.chunks) >= 5
    assert 0.07 <= statistics.median(streamed.gaps()) <= 0.3, streamed.gaps()
    [stored] = sessions(sdk).Content.get(ECHO, created.rid).exchanges
    assert stored.result.agent_markdown_response == streamed.text


def test_the_buffered_streaming_call_returns_the_whole_reply(
    sdk: foundry_sdk.FoundryClient,
) -> None:
    created = sessions(sdk).create(ECHO)

    body = sessions(sdk).streaming_continue(
        ECHO, created.rid, user_input={"text": words(5)}, parameter_inputs={}
    )

    assert body.decode() == echo_reply(words(5))


@dataclass
class Streaming:
    """A long reply streaming in a thread of its own, its first chunk already in."""

    rid: str
    message_id: str
    reader: asyncio.Task[Streamed]


async def streaming_lorem(sdk: foundry_sdk.FoundryClient) -> Streaming:
    rid = sessions(sdk).create(LOREM).rid
    message_id = str(uuid.uuid4())
    first = threading.Event()

    def read() -> Streamed:
        return read_stream(
            sdk, LOREM, rid, "go", message_id=message_id, on_chunk=lambda _count: first.set()
        )

    reader = asyncio.create_task(in_thread(read))
    await in_thread(lambda: first.wait(10))
    return Streaming(rid, message_id, reader)


async def test_a_trace_is_in_progress_while_its_exchange_streams(
    sdk: foundry_sdk.FoundryClient,
) -> None:
    running = await streaming_lorem(sdk)

    trace = await in_thread(
        lambda: sessions(sdk).SessionTrace.get(LOREM, running.rid, running.message_id)
    )
    await in_thread(lambda: sessions(sdk).cancel(LOREM, running.rid, message_id=running.message_id))
    await running.reader

    assert trace.status == "IN_PROGRESS"


async def test_cancel_with_a_response_stores_that_response_as_interrupted(
    sdk: foundry_sdk.FoundryClient,
) -> None:
    running = await streaming_lorem(sdk)

    cancelled = await in_thread(
        lambda: sessions(sdk).cancel(
            LOREM, running.rid, message_id=running.message_id, response="Stopped by the user."
        )
    )
    streamed = await running.reader

    assert cancelled.result is not None
    assert cancelled.result.agent_markdown_response == "Stopped by the user."
    assert cancelled.result.interrupted_output is True
    assert 0 < len(streamed.text) < len(synthetic_reply("go", _lorem_params()))
    [stored] = sessions(sdk).Content.get(LOREM, running.rid).exchanges
    assert stored.result == cancelled.result
    assert sessions(sdk).get(LOREM, running.rid).metadata.message_count == 2


async def test_cancel_without_a_response_leaves_the_exchange_out_of_the_session(
    sdk: foundry_sdk.FoundryClient,
) -> None:
    running = await streaming_lorem(sdk)

    cancelled = await in_thread(
        lambda: sessions(sdk).cancel(LOREM, running.rid, message_id=running.message_id)
    )
    await running.reader

    assert cancelled.result is None
    assert sessions(sdk).Content.get(LOREM, running.rid).exchanges == []
    assert sessions(sdk).get(LOREM, running.rid).metadata.message_count == 0


def test_cancel_of_an_exchange_not_running_raises_message_not_in_progress(
    sdk: foundry_sdk.FoundryClient,
) -> None:
    created = sessions(sdk).create(ECHO)

    with pytest.raises(palantir_errors.CancelSessionFailedMessageNotInProgress):
        sessions(sdk).cancel(ECHO, created.rid, message_id=str(uuid.uuid4()))


async def test_a_continue_on_a_busy_session_raises_conflict(
    sdk: foundry_sdk.FoundryClient,
) -> None:
    running = await streaming_lorem(sdk)

    with pytest.raises(foundry_sdk.ConflictError):
        await in_thread(
            lambda: sessions(sdk).blocking_continue(
                LOREM, running.rid, user_input={"text": "again"}, parameter_inputs={}
            )
        )
    await in_thread(lambda: sessions(sdk).cancel(LOREM, running.rid, message_id=running.message_id))
    await running.reader


def _lorem_params() -> SyntheticParams:
    [agent] = [a for a in builtin_agents() if a.agent_id == "default"]
    return SyntheticParams.parse(agent.model.params)


# --- accept, auth, identity --------------------------------------------------------------------


async def test_streaming_also_answers_accept_application_json(
    sdk: foundry_sdk.FoundryClient, http: httpx.AsyncClient
) -> None:
    created = sessions(sdk).create(ECHO)
    url = f"/api/v2/aipAgents/agents/{ECHO}/sessions/{created.rid}/streamingContinue"
    body = {"userInput": {"text": "hi there"}, "parameterInputs": {}}

    response = await http.post(url, json=body, headers={"Accept": "application/json"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.text == echo_reply("hi there")


async def test_an_accept_it_cannot_answer_gets_406_in_palantirs_envelope(
    sdk: foundry_sdk.FoundryClient, http: httpx.AsyncClient
) -> None:
    created = sessions(sdk).create(ECHO)
    url = f"/api/v2/aipAgents/agents/{ECHO}/sessions/{created.rid}/streamingContinue"
    body = {"userInput": {"text": "hi"}, "parameterInputs": {}}

    response = await http.post(url, json=body, headers={"Accept": "text/html"})

    assert response.status_code == 406
    assert set(response.json()) == {"errorCode", "errorName", "errorInstanceId", "parameters"}
    assert sessions(sdk).Content.get(ECHO, created.rid).exchanges == []


def test_a_wrong_token_raises_unauthorized(server_factory: ServerFactory) -> None:
    server = server_factory({"PARLEY_API_KEYS": "k-alice=alice"})

    with pytest.raises(foundry_sdk.UnauthorizedError):
        sessions(foundry(server, "k-wrong")).create(ECHO)


def test_another_principals_session_is_not_found(server_factory: ServerFactory) -> None:
    server = server_factory({"PARLEY_API_KEYS": "k-alice=alice,k-bob=bob"})
    created = sessions(foundry(server, "k-alice")).create(ECHO)

    with pytest.raises(palantir_errors.SessionNotFound):
        sessions(foundry(server, "k-bob")).get(ECHO, created.rid)


async def test_a_palantir_session_is_resumed_on_native_and_read_back_on_palantir(
    sdk: foundry_sdk.FoundryClient, http: httpx.AsyncClient
) -> None:
    created = sessions(sdk).create(ECHO)
    text = words(30)
    dropped = await in_thread(lambda: read_stream(sdk, ECHO, created.rid, text, stop_after=1))

    sid = conversation_id(created.rid)
    response, events = await stream_events(http, "GET", f"/v1/sessions/{sid}/stream")

    assert response.status_code == 200
    done = events[-1]
    assert done.event == "done"
    joined = "".join(e.json()["text"] for e in events if e.event == "delta")
    assert joined == done.json()["response"]["text"] == echo_reply(text)
    assert joined.startswith(dropped.text)
    [stored] = sessions(sdk).Content.get(ECHO, created.rid).exchanges
    assert stored.result.agent_markdown_response == joined
    assert done.json()["usage"]["totalTokens"] == stored.result.total_tokens_used


def test_the_readme_snippet_runs_unchanged_but_for_the_port(shared_server: ServerProcess) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Palantir AIP Agents v2", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S)
    assert snippet is not None
    code = snippet.group(1).replace("127.0.0.1:8000", f"127.0.0.1:{shared_server.port}")

    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )

    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[-2].startswith("Hello -> ") and lines[-1].startswith("And more -> ")


# --- the formats the schema states, and the checks behind them -------------------------------


async def operation(http: httpx.AsyncClient, path: str, method: str) -> dict[str, Any]:
    document = (await http.get("/schema/openapi.json")).json()
    found: dict[str, Any] = document["paths"]["/api/v2/aipAgents/agents" + path][method]
    return found


def parameter_schema(operation: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [p for p in operation["parameters"] if p["name"] == name]
    schema: dict[str, Any] = found["schema"]
    return schema


async def test_a_session_page_token_the_server_gives_matches_the_documented_pattern(
    sdk: foundry_sdk.FoundryClient, http: httpx.AsyncClient
) -> None:
    agent = await new_agent(http)
    for _ in range(2):
        sessions(sdk).create(agent)
    page = await http.get(f"/api/v2/aipAgents/agents/{agent}/sessions", params={"pageSize": 1})
    listing = await operation(http, "/{agent_rid}/sessions", "get")

    pattern = parameter_schema(listing, "pageToken")["pattern"]

    assert re.fullmatch(pattern, page.json()["nextPageToken"])


async def test_an_agent_version_page_token_the_server_gives_matches_the_documented_pattern(
    http: httpx.AsyncClient,
) -> None:
    agent = await new_agent(http)
    agent_id = agent.removeprefix("ri.aip-agents..agent.")
    published = await http.post(f"/v1/agents/{agent_id}/versions", json={})
    assert published.status_code == 201, published.text
    url = f"/api/v2/aipAgents/agents/{agent}/agentVersions"
    page = await http.get(url, params={"pageSize": 1})
    listing = await operation(http, "/{agent_rid}/agentVersions", "get")

    pattern = parameter_schema(listing, "pageToken")["pattern"]

    assert re.fullmatch(pattern, page.json()["nextPageToken"])
    rest = await http.get(url, params={"pageSize": 1, "pageToken": page.json()["nextPageToken"]})
    assert [v["string"] for v in rest.json()["data"]] == ["2.0"]


async def test_an_empty_page_token_reads_as_the_first_page(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v2/aipAgents/agents/allSessions", params={"pageToken": ""})

    assert response.status_code == 200, response.text


async def test_a_page_token_the_server_did_not_give_raises_invalid_page_token(
    http: httpx.AsyncClient,
) -> None:
    url = f"/api/v2/aipAgents/agents/{ECHO}/agentVersions"

    response = await http.get(url, params={"pageToken": "2\n"})

    body = assert_palantir_error(response, 400)
    assert body["errorName"] == "InvalidPageToken"
    assert body["parameters"]["pageToken"] == "2\n"
    assert "pageToken must be a nextPageToken this server gave" in body["parameters"]["message"]


def test_a_version_with_a_final_line_break_raises_invalid_agent_version(
    sdk: foundry_sdk.FoundryClient,
) -> None:
    with pytest.raises(palantir_errors.InvalidAgentVersion) as raised:
        sessions(sdk).create(ECHO, agent_version="1\n")

    assert raised.value.parameters["version"] == "1\n"


async def test_the_documented_version_format_is_the_one_the_server_takes(
    sdk: foundry_sdk.FoundryClient, http: httpx.AsyncClient
) -> None:
    get_agent = await operation(http, "/{agent_rid}", "get")
    pattern = parameter_schema(get_agent, "version")["pattern"]

    assert [bool(re.fullmatch(pattern, v)) for v in ("1", "1.0", "0", "1.5", " ")] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert sdk.aip_agents.Agent.get(ECHO, version="1").version == "1.0"


async def test_a_body_with_an_unknown_field_is_refused_naming_it(http: httpx.AsyncClient) -> None:
    url = f"/api/v2/aipAgents/agents/{ECHO}/sessions"

    response = await http.post(url, json={"agentVersoin": "1.0"})

    body = assert_palantir_error(response, 400)
    assert "unknown field `agentVersoin`" in body["parameters"]["message"]


async def test_the_document_says_create_session_takes_no_body_and_no_unknown_field(
    http: httpx.AsyncClient,
) -> None:
    document = (await http.get("/schema/openapi.json")).json()
    create = document["paths"]["/api/v2/aipAgents/agents/{agent_rid}/sessions"]["post"]
    shapes = create["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
    [named] = [s["$ref"].removeprefix("#/components/schemas/") for s in shapes if "$ref" in s]

    assert create["requestBody"]["required"] is False
    assert document["components"]["schemas"][named]["additionalProperties"] is False
    assert (await http.post(f"/api/v2/aipAgents/agents/{ECHO}/sessions")).status_code == 200


async def test_streaming_continue_is_documented_as_octet_stream_with_406_and_409(
    http: httpx.AsyncClient,
) -> None:
    path = "/{agent_rid}/sessions/{session_rid}/streamingContinue"

    responses = (await operation(http, path, "post"))["responses"]

    assert list(responses["200"]["content"]) == ["application/octet-stream"]
    assert {"400", "404", "406", "409"} <= set(responses)
    assert list(responses["406"]["content"]) == ["application/json"]


async def test_the_document_says_parameter_inputs_are_string_values(
    http: httpx.AsyncClient,
) -> None:
    document = (await http.get("/schema/openapi.json")).json()

    inputs = document["components"]["schemas"]["wire.ContinueRequest"]["properties"]
    value = inputs["parameterInputs"]["additionalProperties"]

    assert value["properties"]["type"] == {"const": "string"}
    assert value["required"] == ["type", "value"]


async def test_the_document_links_a_created_session_to_the_operations_on_it(
    http: httpx.AsyncClient,
) -> None:
    create = await operation(http, "/{agent_rid}/sessions", "post")

    links = create["responses"]["200"]["links"].values()

    # get, delete, both continues, cancel, title, content, ragContext (a trace needs its id)
    assert len(links) == 8
    assert {link["parameters"]["path.session_rid"] for link in links} == {"$response.body#/rid"}


async def test_a_message_id_the_engine_cannot_keep_is_refused_naming_it(
    sdk: foundry_sdk.FoundryClient, http: httpx.AsyncClient
) -> None:
    created = sessions(sdk).create(ECHO)
    url = f"/api/v2/aipAgents/agents/{ECHO}/sessions/{created.rid}/streamingContinue"
    body = {"userInput": {"text": "hi"}, "parameterInputs": {}, "messageId": "not an id"}

    response = await http.post(url, json=body)

    message = assert_palantir_error(response, 400)["parameters"]["message"]
    assert (
        message == "messageId must be a UUID (or 1-64 letters, digits, '-' or '_'), got 'not an id'"
    )
    assert sessions(sdk).Content.get(ECHO, created.rid).exchanges == []


async def test_a_blank_turn_is_refused_naming_user_input_text(
    sdk: foundry_sdk.FoundryClient, http: httpx.AsyncClient
) -> None:
    created = sessions(sdk).create(ECHO)
    url = f"/api/v2/aipAgents/agents/{ECHO}/sessions/{created.rid}/blockingContinue"

    response = await http.post(url, json={"userInput": {"text": "  "}, "parameterInputs": {}})

    assert assert_palantir_error(response, 400)["parameters"]["message"] == (
        "userInput.text must not be empty"
    )


# --- Litestar's own errors, and turning the surface off ----------------------------------------


def assert_palantir_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"errorCode", "errorName", "errorInstanceId", "parameters"}
    uuid.UUID(body["errorInstanceId"])
    return body


async def test_a_body_of_the_wrong_shape_gets_400_in_palantirs_envelope(
    sdk: foundry_sdk.FoundryClient, http: httpx.AsyncClient
) -> None:
    created = sessions(sdk).create(ECHO)
    url = f"/api/v2/aipAgents/agents/{ECHO}/sessions/{created.rid}/blockingContinue"

    response = await http.post(url, json={"userInput": {"text": 5}, "parameterInputs": {}})

    body = assert_palantir_error(response, 400)
    assert body["errorCode"] == "INVALID_ARGUMENT"
    assert "userInput.text" in body["parameters"]["message"]


async def test_an_unknown_path_under_the_surface_gets_404_in_palantirs_envelope(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/api/v2/aipAgents/nothing-here")

    assert assert_palantir_error(response, 404)["errorCode"] == "NOT_FOUND"


async def test_a_method_not_allowed_gets_405_in_palantirs_envelope(
    http: httpx.AsyncClient,
) -> None:
    response = await http.patch(f"/api/v2/aipAgents/agents/{ECHO}/sessions")

    assert_palantir_error(response, 405)


async def test_an_oversized_body_gets_413_in_palantirs_envelope(
    sdk: foundry_sdk.FoundryClient, http: httpx.AsyncClient
) -> None:
    created = sessions(sdk).create(ECHO)
    url = f"/api/v2/aipAgents/agents/{ECHO}/sessions/{created.rid}/blockingContinue"
    body = {"userInput": {"text": "x" * 2_000_000}, "parameterInputs": {}}

    response = await http.post(url, json=body)

    assert assert_palantir_error(response, 413)["errorCode"] == "REQUEST_ENTITY_TOO_LARGE"
    assert sessions(sdk).Content.get(ECHO, created.rid).exchanges == []


async def test_a_surface_turned_off_is_not_served(server_factory: ServerFactory) -> None:
    server = server_factory({"PARLEY_SURFACES": "native"})

    async with server.client() as http:
        palantir = await http.get("/api/v2/aipAgents/agents/allSessions")
        native = await http.get("/v1/sessions")

    assert palantir.status_code == 404
    assert "error" in palantir.json()
    assert native.status_code == 200


def test_an_unknown_surface_stops_the_server_with_a_clear_message(
    server_factory: ServerFactory,
) -> None:
    with pytest.raises(ServerStartError) as failed:
        server_factory({"PARLEY_SURFACES": "native,qoder-typo"})

    assert "PARLEY_SURFACES: unknown surface qoder-typo" in str(failed.value)
