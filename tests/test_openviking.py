"""The OpenViking session API at /api/v1/sessions: envelopes, imported messages, commit
(compaction), context and counters, with raw httpx against a real server and the fake
OpenAI upstream."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import foundry_sdk
import httpx
import pytest

from tests.support.agents import agent_body, create_agent, start_upstream_server
from tests.support.native import blocking_continue, create_sid, get_session, list_exchanges
from tests.support.servers import ServerProcess
from tests.support.upstream import Reply, UpstreamServer

KEY = "ov-secret-key"
BASE = "/api/v1/sessions"
NULLS = {"error": None, "telemetry": None, "profile": None}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# A synthetic agent that summarises at once: 6 deterministic tokens, no latency.
FAST = {
    "provider": "synthetic",
    "name": "fast",
    "params": {
        "mode": "lorem",
        "tokensPerSecond": 100000,
        "firstTokenLatencyMs": 0,
        "replyTokens": 6,
    },
}


@pytest.fixture(scope="module")
def parley(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, upstream: UpstreamServer
) -> Iterator[ServerProcess]:
    log_dir = tmp_path_factory.mktemp("openviking")
    server = start_upstream_server(
        log_dir, redis_url, upstream, PARLEY_API_KEYS=f"{KEY}=acme:admin"
    )
    yield server
    server.terminate()


@pytest.fixture
async def ov(parley: ServerProcess, upstream: UpstreamServer) -> AsyncIterator[httpx.AsyncClient]:
    upstream.reset()
    headers = {"X-API-Key": KEY, "Authorization": f"Bearer {KEY}"}
    async with parley.client(headers=headers) as client:
        yield client


def ok(result: Any) -> dict[str, Any]:
    return {"status": "ok", "result": result, **NULLS}


def error(code: str, message: str, details: Any = None) -> dict[str, Any]:
    info = {"code": code, "message": message, "details": details}
    return {"status": "error", "result": None, "error": info, "telemetry": None, "profile": None}


def new_id() -> str:
    return f"ov-{uuid.uuid4().hex[:12]}"


async def detail(ov: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    response = await ov.get(f"{BASE}/{sid}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "ok", body
    return body["result"]  # type: ignore[no-any-return]


async def fast_session(ov: httpx.AsyncClient) -> str:
    agent = await create_agent(ov, **agent_body("synthetic", model=FAST))
    sid = new_id()
    headers = {"X-OpenViking-Agent": agent["agentId"]}
    response = await ov.post(BASE, json={"session_id": sid}, headers=headers)
    assert response.status_code == 200, response.text
    return sid


async def add(ov: httpx.AsyncClient, sid: str, *texts: str) -> dict[str, Any]:
    """Alternating user and assistant messages, in one batch."""
    roles = ("user", "assistant")
    messages = [{"role": roles[i % 2], "content": t} for i, t in enumerate(texts)]
    response = await ov.post(f"{BASE}/{sid}/messages/batch", json={"messages": messages})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# --- create, get, list, delete -------------------------------------------------------------


async def test_create_answers_the_id_and_the_user_in_the_envelope(ov: httpx.AsyncClient) -> None:
    sid = new_id()
    response = await ov.post(BASE, json={"session_id": sid}, headers={"X-OpenViking-User": "al"})

    assert response.status_code == 200
    user = {"account_id": "acme", "user_id": "al", "agent_id": "default"}
    assert response.json() == ok({"session_id": sid, "user": user})


async def test_create_without_a_body_makes_a_new_id(ov: httpx.AsyncClient) -> None:
    response = await ov.post(BASE)

    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.json()["result"]["session_id"])


async def test_a_duplicate_id_is_already_exists(ov: httpx.AsyncClient) -> None:
    sid = new_id()
    await ov.post(BASE, json={"session_id": sid})

    response = await ov.post(BASE, json={"session_id": sid})

    assert response.status_code == 409
    assert response.json() == error("ALREADY_EXISTS", f"Session '{sid}' already exists")


async def test_an_id_outside_parleys_rule_is_invalid_argument(ov: httpx.AsyncClient) -> None:
    response = await ov.post(BASE, json={"session_id": "has spaces!"})

    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "INVALID_ARGUMENT"
    assert body["error"]["details"]["field"] == "session_id"


async def test_an_unknown_agent_header_is_not_found(ov: httpx.AsyncClient) -> None:
    response = await ov.post(BASE, json={}, headers={"X-OpenViking-Agent": "nobody-here"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_get_of_a_missing_session_is_200_with_status_error(ov: httpx.AsyncClient) -> None:
    response = await ov.get(f"{BASE}/not-exists")

    assert response.status_code == 200
    assert response.json() == error("NOT_FOUND", "Session not-exists not found")


async def test_get_with_auto_create_makes_an_empty_session(ov: httpx.AsyncClient) -> None:
    sid = new_id()
    response = await ov.get(f"{BASE}/{sid}", params={"auto_create": "true"})

    body = response.json()
    result = body["result"]
    assert (response.status_code, body["status"]) == (200, "ok")
    assert ISO_MS.match(result["created_at"]) and ISO_MS.match(result["updated_at"])
    assert result | {"created_at": "", "updated_at": ""} == {
        "session_id": sid,
        "created_at": "",
        "updated_at": "",
        "created_by_user_id": "default",
        "participant_user_ids": [],
        "participant_agent_ids": [],
        "message_count": 0,
        "commit_count": 0,
        "memories_extracted": dict.fromkeys(
            (
                "profile",
                "preferences",
                "entities",
                "events",
                "cases",
                "patterns",
                "tools",
                "skills",
                "total",
            ),
            0,
        ),
        "last_commit_at": "",
        "llm_token_usage": {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cached_tokens": 0,
            "reasoning_tokens": 0,
        },
        "embedding_token_usage": {"total_tokens": 0},
        "pending_tokens": 0,
        "keep_recent_count": 0,
        "total_message_count": 0,
        "user": {"account_id": "acme", "user_id": "default", "agent_id": "default"},
    }


async def test_list_holds_the_keys_sessions(ov: httpx.AsyncClient) -> None:
    sid = new_id()
    await ov.post(BASE, json={"session_id": sid})

    response = await ov.get(BASE)

    body = response.json()
    assert body["status"] == "ok" and body["error"] is None
    item = {"session_id": sid, "uri": f"viking://session/{sid}", "is_dir": True}
    assert item in body["result"]


async def test_delete_removes_the_session_and_a_second_delete_is_not_found(
    ov: httpx.AsyncClient,
) -> None:
    sid = new_id()
    await ov.post(BASE, json={"session_id": sid})

    first = await ov.delete(f"{BASE}/{sid}")
    second = await ov.delete(f"{BASE}/{sid}")

    assert (first.status_code, first.json()) == (200, ok({"session_id": sid}))
    assert second.status_code == 404
    details = {"type": "session", "resource": sid}
    assert second.json() == error("NOT_FOUND", f"Session not found: {sid}", details)


# --- messages ------------------------------------------------------------------------------


async def test_a_message_auto_creates_the_session_and_counts(ov: httpx.AsyncClient) -> None:
    sid = new_id()
    response = await ov.post(f"{BASE}/{sid}/messages", json={"role": "user", "content": "hi"})

    assert response.json() == ok({"session_id": sid, "message_count": 1})
    assert (await detail(ov, sid))["pending_tokens"] == 1  # 2 chars * 0.25, rounded up


async def test_parts_win_over_content(ov: httpx.AsyncClient) -> None:
    sid = new_id()
    body = {"role": "user", "content": "ignored", "parts": [{"type": "text", "text": "kept"}]}

    await ov.post(f"{BASE}/{sid}/messages", json=body)

    [exchange] = await list_exchanges(ov, sid)
    assert exchange["userInput"]["text"] == "kept"


async def test_a_message_with_neither_content_nor_parts_is_400_and_creates_nothing(
    ov: httpx.AsyncClient,
) -> None:
    sid = new_id()
    response = await ov.post(f"{BASE}/{sid}/messages", json={"role": "user"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert (await ov.get(f"{BASE}/{sid}")).json()["status"] == "error"


async def test_a_batch_over_100_is_400_and_creates_nothing(ov: httpx.AsyncClient) -> None:
    sid = new_id()
    messages = [{"role": "user", "content": f"m{i}"} for i in range(101)]

    response = await ov.post(f"{BASE}/{sid}/messages/batch", json={"messages": messages})

    body = response.json()
    assert response.status_code == 400
    assert body["status"] == "error" and body["error"]["code"] == "INVALID_ARGUMENT"
    assert "validation_errors" in body["error"]["details"]
    assert (await ov.get(f"{BASE}/{sid}")).json()["status"] == "error"


async def test_a_batch_adds_every_message_in_order(ov: httpx.AsyncClient) -> None:
    sid = new_id()

    body = await add(ov, sid, "q1", "a1", "q2")

    assert body == ok({"session_id": sid, "message_count": 3, "added": 3})
    shown = [(x["userInput"]["text"], x["response"]["text"]) for x in await list_exchanges(ov, sid)]
    assert shown == [("q1", ""), ("", "a1"), ("q2", "")]


async def test_imported_turns_are_in_the_context_the_upstream_receives(
    ov: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    agent = await create_agent(ov, **agent_body(instructions="Be brief."))
    sid = await create_sid(ov, agentId=agent["agentId"])
    await add(ov, sid, "my name is Ann", "noted")
    await ov.post(f"{BASE}/{sid}/messages", json={"role": "user", "content": "I like tea"})
    upstream.queue(Reply(pieces=("Tea",)))

    await blocking_continue(ov, sid, "what do I like?")

    sent = [(m["role"], m["content"]) for m in upstream.requests[-1].body["messages"]]
    assert sent == [
        ("system", "Be brief."),
        ("user", "my name is Ann"),
        ("assistant", "noted"),
        ("user", "I like tea\n\nwhat do I like?"),
    ]
    assert (await detail(ov, sid))["message_count"] == 5


# --- commit, archives, context -------------------------------------------------------------


async def test_commit_with_nothing_beyond_the_window_archives_nothing(
    ov: httpx.AsyncClient,
) -> None:
    sid = await fast_session(ov)
    await add(ov, sid, "q1", "a1")

    response = await ov.post(f"{BASE}/{sid}/commit", json={"keep_recent_count": 5})

    assert response.json() == {
        "status": "ok",
        "result": {
            "session_id": sid,
            "archived": False,
            "reason": "all_within_keep_window",
            "status": "accepted",
        },
    }
    assert (await detail(ov, sid))["commit_count"] == 0


async def test_two_commits_archive_summarise_and_shrink_the_context(
    ov: httpx.AsyncClient,
) -> None:
    sid = await fast_session(ov)
    await add(ov, sid, "one " * 8, "two " * 8, "three", "four")
    before = await detail(ov, sid)

    first = (await ov.post(f"{BASE}/{sid}/commit", json={"keep_recent_count": 2})).json()
    after = await detail(ov, sid)
    context = (await ov.get(f"{BASE}/{sid}/context")).json()["result"]
    archive = (await ov.get(f"{BASE}/{sid}/archives/archive_001")).json()["result"]

    assert before["pending_tokens"] == 8 + 8 + 2 + 1  # "one "*8: 32 chars * 0.25, ...
    assert first["result"]["archive_uri"] == f"viking://session/{sid}/history/archive_001"
    assert first["result"]["archived"] is True and set(first) == {"status", "result"}
    assert (after["commit_count"], after["message_count"], after["pending_tokens"]) == (1, 2, 0)
    assert ISO_MS.match(after["last_commit_at"]) and after["keep_recent_count"] == 2
    assert after["llm_token_usage"]["completion_tokens"] == 6
    assert [m["parts"][0]["text"] for m in context["messages"]] == ["three", "four"]
    assert context["latest_archive_overview"] == archive["overview"] != ""
    assert [m["parts"][0]["text"] for m in archive["messages"]] == ["one " * 8, "two " * 8]

    await add(ov, sid, "five", "six")
    second = (await ov.post(f"{BASE}/{sid}/commit", json={"keep_recent_count": 0})).json()
    final = await detail(ov, sid)
    context = (await ov.get(f"{BASE}/{sid}/context")).json()["result"]

    assert second["result"]["archive_uri"].endswith("/archive_002")
    assert (final["commit_count"], final["message_count"], final["pending_tokens"]) == (2, 0, 0)
    assert final["llm_token_usage"]["completion_tokens"] == 12
    assert context["messages"] == [] and context["stats"]["totalArchives"] == 2
    assert context["pre_archive_abstracts"][0]["archive_id"] == "archive_001"


async def test_the_next_exchange_sends_the_summary_not_the_archived_messages(
    ov: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    agent = await create_agent(ov, **agent_body(instructions="Be brief."))
    sid = await create_sid(ov, agentId=agent["agentId"])
    await add(ov, sid, "old question", "old answer", "recent")
    upstream.queue(Reply(pieces=("The ", "gist")))
    await ov.post(f"{BASE}/{sid}/commit", json={"keep_recent_count": 1})

    await blocking_continue(ov, sid, "next")

    body = upstream.requests[-1].body
    assert body["messages"] == [
        {
            "role": "system",
            "content": "Be brief.\n\nSummary of the earlier conversation:\nThe gist",
        },
        {"role": "user", "content": "recent\n\nnext"},
    ]
    summary_call = upstream.requests[-2].body["messages"][-1]["content"]
    assert summary_call == "user: old question\nassistant: old answer"


async def test_a_missing_archive_is_200_with_status_error(ov: httpx.AsyncClient) -> None:
    sid = await fast_session(ov)

    response = await ov.get(f"{BASE}/{sid}/archives/archive_009")

    assert response.status_code == 200
    assert response.json() == error("NOT_FOUND", "Archive archive_009 not found")


async def test_context_keeps_the_newest_messages_within_the_budget(ov: httpx.AsyncClient) -> None:
    sid = new_id()
    await add(ov, sid, "a b c", "d e f", "g h")

    response = await ov.get(f"{BASE}/{sid}/context", params={"token_budget": 5})

    result = response.json()["result"]
    assert [m["parts"][0]["text"] for m in result["messages"]] == ["d e f", "g h"]
    assert result["estimatedTokens"] == 5


# --- bad input -----------------------------------------------------------------------------


async def test_a_negative_token_budget_is_invalid_argument(ov: httpx.AsyncClient) -> None:
    sid = new_id()
    await add(ov, sid, "hi")

    response = await ov.get(f"{BASE}/{sid}/context", params={"token_budget": -1})

    assert response.status_code == 400
    details = {"field": "token_budget", "value": -1}
    message = "token_budget must be greater than or equal to 0"
    assert response.json() == error("INVALID_ARGUMENT", message, details)


async def test_commit_of_an_unknown_session_is_not_found(ov: httpx.AsyncClient) -> None:
    response = await ov.post(f"{BASE}/nope-{uuid.uuid4().hex}/commit", json={})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "body",
    [{"keep_recent_count": "two"}, {"keep_recent_count": -1}, {"keep_recent_count": 10_001}],
    ids=["wrong type", "negative", "too large"],
)
async def test_a_bad_keep_recent_count_is_400_and_changes_nothing(
    ov: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    sid = new_id()
    await add(ov, sid, "q", "a")
    before = await detail(ov, sid)

    response = await ov.post(f"{BASE}/{sid}/commit", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert await detail(ov, sid) == before


async def test_a_wrong_role_is_400_and_stores_nothing(ov: httpx.AsyncClient) -> None:
    sid = new_id()
    await add(ov, sid, "q")

    response = await ov.post(f"{BASE}/{sid}/messages", json={"role": "tool", "content": "x"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert (await detail(ov, sid))["message_count"] == 1


async def test_an_oversized_body_is_in_the_envelope(ov: httpx.AsyncClient) -> None:
    sid = new_id()
    big = {"role": "user", "content": "x" * 1_100_000}

    response = await ov.post(f"{BASE}/{sid}/messages", json=big)

    body = response.json()
    assert response.status_code == 413
    assert body["status"] == "error" and body["result"] is None
    assert (await ov.get(f"{BASE}/{sid}")).json()["status"] == "error"


async def test_a_wrong_key_is_401_unauthenticated(parley: ServerProcess) -> None:
    async with parley.client(headers={"X-API-Key": "wrong"}) as client:
        response = await client.post(BASE, json={})

    assert response.status_code == 401
    assert response.json() == error("UNAUTHENTICATED", "Invalid API Key")


async def test_x_api_key_wins_over_bearer(parley: ServerProcess) -> None:
    headers = {"X-API-Key": KEY, "Authorization": "Bearer wrong"}
    async with parley.client(headers=headers) as client:
        response = await client.get(BASE)

    assert response.status_code == 200


# --- cross-surface -------------------------------------------------------------------------


async def test_a_native_sessions_detail_agrees_with_its_history_and_usage(
    ov: httpx.AsyncClient,
) -> None:
    sid = await create_sid(ov, agentId="echo")
    await blocking_continue(ov, sid, "hello there")
    await blocking_continue(ov, sid, "again")
    native = await get_session(ov, sid)

    result = await detail(ov, sid)

    usage = native["usage"]
    assert result["message_count"] == 2 * len(await list_exchanges(ov, sid)) == 4
    assert result["llm_token_usage"] == {
        "prompt_tokens": usage["inputTokens"]
        + usage["cacheReadInputTokens"]
        + usage["cacheCreationInputTokens"],
        "completion_tokens": usage["outputTokens"],
        "total_tokens": usage["totalTokens"],
        "cached_tokens": usage["cacheReadInputTokens"],
        "reasoning_tokens": 0,
    }
    assert result["total_message_count"] == 4 and result["commit_count"] == 0


async def test_a_palantir_sessions_detail_agrees_with_its_content_and_tokens(
    ov: httpx.AsyncClient, parley: ServerProcess
) -> None:
    sdk = foundry_sdk.FoundryClient(
        auth=foundry_sdk.UserTokenAuth(KEY),
        hostname=f"127.0.0.1:{parley.port}",
        config=foundry_sdk.Config(scheme="http"),
    )
    sessions = sdk.aip_agents.Agent.Session
    agent = "ri.aip-agents..agent.echo"
    created = sessions.create(agent)
    results = [
        sessions.blocking_continue(agent, created.rid, user_input={"text": t}, parameter_inputs={})
        for t in ("hello there", "and again")
    ]

    result = await detail(ov, created.rid.removeprefix("ri.aip-agents..session."))

    content = sessions.Content.get(agent, created.rid)
    assert result["message_count"] == 2 * len(content.exchanges) == 4
    total = sum(r.total_tokens_used or 0 for r in results)
    assert result["llm_token_usage"]["total_tokens"] == total
    assert sessions.get(agent, created.rid).metadata.message_count == result["message_count"]


# --- what the OpenAPI document says, and the server does -----------------------------------


async def operation(ov: httpx.AsyncClient, method: str, path: str) -> dict[str, Any]:
    document = (await ov.get("/schema/openapi.json")).json()
    found: dict[str, Any] = document["paths"][f"{BASE}{path}"][method]
    found["components"] = document["components"]["schemas"]
    return found


def body_schema(op: dict[str, Any]) -> dict[str, Any]:
    """The body's schema: its own keywords, with those of the component it refers to."""
    schema: dict[str, Any] = op["requestBody"]["content"]["application/json"]["schema"]
    schema = next((s for s in schema.get("anyOf", []) if "$ref" in s), schema)
    return {**op["components"][schema["$ref"].rsplit("/", 1)[1]], **schema}


async def test_a_session_is_created_without_a_body_as_the_document_allows(
    ov: httpx.AsyncClient,
) -> None:
    op = await operation(ov, "post", "")

    response = await ov.post(BASE)

    assert op["requestBody"]["required"] is False
    assert response.status_code == 200 and response.json()["status"] == "ok"


async def test_the_document_declares_409_for_an_id_in_use(ov: httpx.AsyncClient) -> None:
    op = await operation(ov, "post", "")
    sid = new_id()
    await ov.post(BASE, json={"session_id": sid})

    response = await ov.post(BASE, json={"session_id": sid})

    assert "409" in op["responses"] and response.status_code == 409


async def test_a_commit_goes_without_a_body_as_the_document_allows(ov: httpx.AsyncClient) -> None:
    op = await operation(ov, "post", "/{session_id}/commit")
    sid = new_id()
    await add(ov, sid, "q", "a")

    response = await ov.post(f"{BASE}/{sid}/commit")

    assert op["requestBody"]["required"] is False and "409" in op["responses"]
    assert response.status_code == 200 and response.json()["status"] == "ok"


async def test_the_document_says_token_budget_is_at_least_0(ov: httpx.AsyncClient) -> None:
    op = await operation(ov, "get", "/{session_id}/context")

    [budget] = [p for p in op["parameters"] if p["name"] == "token_budget"]

    assert budget["schema"]["minimum"] == 0


async def test_an_empty_batch_is_400_and_creates_nothing_as_the_document_says(
    ov: httpx.AsyncClient,
) -> None:
    messages = body_schema(await operation(ov, "post", "/{session_id}/messages/batch"))
    sid = new_id()

    response = await ov.post(f"{BASE}/{sid}/messages/batch", json={"messages": []})

    assert (
        messages["properties"]["messages"]["minItems"],
        messages["properties"]["messages"]["maxItems"],
    ) == (1, 100)
    assert response.status_code == 400
    details = {"field": "messages"}
    assert response.json() == error(
        "INVALID_ARGUMENT", "messages must hold 1 to 100 messages", details
    )
    assert (await ov.get(f"{BASE}/{sid}")).json()["status"] == "error"


async def test_the_document_says_a_message_needs_content_or_parts_with_text(
    ov: httpx.AsyncClient,
) -> None:
    schema = body_schema(await operation(ov, "post", "/{session_id}/messages"))

    [parts, content] = schema["anyOf"]

    assert (parts["required"], content["required"]) == (["parts"], ["content"])
    assert content["properties"]["content"]["pattern"] == r"\S"
    assert parts["properties"]["parts"]["contains"]["properties"]["text"]["pattern"] == r"\S"


@pytest.mark.parametrize(
    "body",
    [
        {"role": "user", "content": " "},
        {"role": "user", "parts": []},
        {"role": "user", "content": "x", "parts": [{"type": "text", "text": " "}]},
    ],
    ids=["blank content", "no parts", "blank parts win over content"],
)
async def test_a_message_without_text_is_400_and_creates_nothing(
    ov: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    sid = new_id()

    response = await ov.post(f"{BASE}/{sid}/messages", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "content must not be empty"
    assert (await ov.get(f"{BASE}/{sid}")).json()["status"] == "error"


async def test_the_document_gives_the_session_id_rule_where_a_session_is_made(
    ov: httpx.AsyncClient,
) -> None:
    created = body_schema(await operation(ov, "post", ""))["properties"]["session_id"]["anyOf"][0]
    op = await operation(ov, "post", "/{session_id}/messages")
    [path] = [p for p in op["parameters"] if p["name"] == "session_id"]

    rule = re.compile(created["pattern"])

    assert path["schema"]["pattern"] == created["pattern"]
    assert [bool(rule.search(v)) for v in ("a_B-1", "x" * 64)] == [True, True]
    assert [bool(rule.search(v)) for v in ("", "a b", "x" * 65, "abc\n")] == [False] * 4


async def test_an_id_ending_in_a_line_break_is_refused_on_create(ov: httpx.AsyncClient) -> None:
    response = await ov.post(BASE, json={"session_id": "abc\n"})

    assert response.status_code == 400
    message = "session_id must be 1-64 characters of letters, digits, '-' or '_', not 'abc\\n'"
    assert response.json() == error("INVALID_ARGUMENT", message, {"field": "session_id"})


async def test_adding_to_an_id_ending_in_a_line_break_is_refused_and_creates_nothing(
    ov: httpx.AsyncClient,
) -> None:
    sid = f"{new_id()}%0A"  # a line break, escaped in the path

    response = await ov.post(f"{BASE}/{sid}/messages", json={"role": "user", "content": "hi"})

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"field": "session_id"}
    assert (await ov.get(f"{BASE}/{sid}")).json()["status"] == "error"


async def test_auto_create_refuses_an_id_ending_in_a_line_break(ov: httpx.AsyncClient) -> None:
    sid = f"{new_id()}%0A"  # a line break, escaped in the path

    response = await ov.get(f"{BASE}/{sid}", params={"auto_create": "true"})

    assert response.status_code == 400
    assert (await ov.get(f"{BASE}/{sid}")).json()["status"] == "error"
