"""Sonaops's open API on a real uvicorn process: the envelope, signed requests under both
schemes, and SSE replies that resume with ``Last-Event-ID``. Requests are signed by the
test's own implementation of Sonaops's rules (tests/support/sonaops.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from unittest.mock import ANY

import httpx
import pytest

from tests.support.native import expected_reply, words
from tests.support.servers import ServerProcess, new_key_prefix, start_server
from tests.support.sonaops import (
    ACME,
    LEGACY,
    Signer,
    chat,
    failed,
    new_conversation,
    ok_data,
    open_chat,
    read_frames,
    refused,
    signed_post,
    write_keys_file,
)

CONVERSATION = "/v1/chat/conversation"
STREAM = "/v1/chat/stream"
AGENTS = "/v1/agent/list"


@pytest.fixture(scope="module")
def sonaops(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServerProcess]:
    """One server for the module, with keys that sign (current and legacy) and one that
    does not: tests keep apart by their own conversations and request ids."""
    directory = tmp_path_factory.mktemp("sonaops")
    env = {"PARLEY_KEYS_FILE": write_keys_file(directory)}
    server = start_server(directory, redis_url=redis_url, key_prefix=new_key_prefix(), env=env)
    yield server
    server.terminate()


@pytest.fixture
async def http(sonaops: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with sonaops.client() as client:
        yield client


def native(key: str = "sk-live-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- signatures ------------------------------------------------------------------------------


async def test_a_good_signature_creates_a_conversation_in_the_envelope(
    http: httpx.AsyncClient,
) -> None:
    response = await signed_post(http, CONVERSATION, {"agentId": "echo"})

    data = ok_data(response)
    assert data["agentId"] == "echo"
    session = await http.get(f"/v1/sessions/{data['conversationId']}", headers=native())
    assert session.status_code == 200 and session.json()["agentId"] == "echo"
    assert len(data["conversationId"]) == 32 and "-" not in data["conversationId"]


async def test_every_kind_of_body_field_signs_as_the_rules_say(http: httpx.AsyncClient) -> None:
    body = {
        "agentId": " echo ",
        "note": "  你好 ",
        "n": 1.5,
        "flag": False,
        "nested": {"b": [1, True, None], "a": "x"},
        "empty": {},
        "none": [],
        "blank": "   ",
        "missing": None,
    }

    assert ok_data(await signed_post(http, CONVERSATION, body))["agentId"] == "echo"


async def test_a_tampered_body_is_refused(http: httpx.AsyncClient) -> None:
    headers = ACME.headers("POST", CONVERSATION, body={"agentId": "echo"})

    response = await http.post(CONVERSATION, json={"agentId": "default"}, headers=headers)

    refused(response, 401, 10401, "X-Signature does not match the request")


async def test_a_tampered_query_is_refused(http: httpx.AsyncClient) -> None:
    headers = ACME.headers("GET", AGENTS, query={"pageSize": "10"})

    response = await http.get(AGENTS, params={"pageSize": "20"}, headers=headers)

    refused(response, 401, 10401, "X-Signature does not match the request")


async def test_a_signature_made_with_another_secret_is_refused(http: httpx.AsyncClient) -> None:
    forger = Signer("sk-live-1", "not-the-secret")

    response = await signed_post(http, CONVERSATION, {"agentId": "echo"}, forger)

    refused(response, 401, 10401, "X-Signature does not match the request")


@pytest.mark.parametrize("skew", [301, -301])
async def test_a_timestamp_301_seconds_off_is_refused(http: httpx.AsyncClient, skew: int) -> None:
    body = {"agentId": "echo"}
    stale = int(time.time()) + skew

    headers = ACME.headers("POST", CONVERSATION, body=body, timestamp=stale)
    response = await http.post(CONVERSATION, json=body, headers=headers)

    refused(response, 401, 10401, "X-Timestamp has expired: it must be within 300 s of server time")


async def test_a_replayed_request_id_is_refused(http: httpx.AsyncClient) -> None:
    body = {"agentId": "echo"}
    headers = ACME.headers("POST", CONVERSATION, body=body)
    ok_data(await http.post(CONVERSATION, json=body, headers=headers))

    replay = await http.post(CONVERSATION, json=body, headers=headers)

    refused(replay, 401, 10401, "X-Request-ID has already been used")


async def test_a_forged_request_does_not_burn_its_request_id(http: httpx.AsyncClient) -> None:
    body = {"agentId": "echo"}
    request_id = str(uuid.uuid4())
    forged = Signer("sk-live-1", "wrong").headers(
        "POST", CONVERSATION, body=body, request_id=request_id
    )
    refused(
        await http.post(CONVERSATION, json=body, headers=forged),
        401,
        10401,
        "X-Signature does not match the request",
    )

    genuine = ACME.headers("POST", CONVERSATION, body=body, request_id=request_id)

    ok_data(await http.post(CONVERSATION, json=body, headers=genuine))


@pytest.mark.parametrize("missing", ["X-Signature", "X-Request-ID", "X-User-ID"])
async def test_a_missing_signature_header_is_named(http: httpx.AsyncClient, missing: str) -> None:
    body = {"agentId": "echo"}
    headers = ACME.headers("POST", CONVERSATION, body=body)
    del headers[missing]

    response = await http.post(CONVERSATION, json=body, headers=headers)

    refused(response, 401, 10401, f"{missing} header is required for a key with a secret")


async def test_a_missing_or_unknown_key_is_refused(http: httpx.AsyncClient) -> None:
    body = {"agentId": "echo"}

    missing = await http.post(CONVERSATION, json=body)
    unknown = await http.post(CONVERSATION, json=body, headers=native("sk-nobody"))

    refused(missing, 401, 10401, "Authorization header is required: Bearer <apiKey>")
    refused(unknown, 401, 10401, "Invalid API key")


async def test_the_legacy_scheme_is_accepted_for_a_key_that_allows_it(
    http: httpx.AsyncClient,
) -> None:
    body = {"agentId": "echo"}

    response = await http.post(CONVERSATION, json=body, headers=LEGACY.legacy_headers(body))

    conversation = ok_data(response)["conversationId"]
    session = await http.get(f"/v1/sessions/{conversation}", headers=native("sk-legacy-1"))
    assert session.status_code == 200


async def test_the_legacy_scheme_is_refused_for_a_key_that_does_not_allow_it(
    http: httpx.AsyncClient,
) -> None:
    body = {"agentId": "echo"}

    response = await http.post(CONVERSATION, json=body, headers=ACME.legacy_headers(body))

    refused(response, 401, 10401, "X-Timestamp header is required for a key with a secret")


async def test_a_key_without_a_secret_needs_no_signature(http: httpx.AsyncClient) -> None:
    response = await http.post(CONVERSATION, json={"agentId": "echo"}, headers=native("sk-plain-1"))

    assert ok_data(response)["agentId"] == "echo"


async def test_with_authentication_off_a_loopback_caller_needs_no_key(
    shared_server: ServerProcess,
) -> None:
    async with shared_server.client() as http:
        response = await http.post(CONVERSATION, json={"agentId": "echo"})

    assert ok_data(response)["agentId"] == "echo"


# --- business errors -------------------------------------------------------------------------


async def test_a_missing_agent_id_is_10400_at_http_200(http: httpx.AsyncClient) -> None:
    for body in ({}, {"agentId": None}, {"agentId": "  "}):
        response = await signed_post(http, CONVERSATION, body)

        refused(response, 200, 10400, "agentId is required")


async def test_an_unknown_agent_is_10404(http: httpx.AsyncClient) -> None:
    response = await signed_post(http, CONVERSATION, {"agentId": "no-such-agent"})

    refused(response, 200, 10404, "Agent not found")


async def test_a_field_of_the_wrong_type_is_10400_naming_it(http: httpx.AsyncClient) -> None:
    response = await signed_post(http, CONVERSATION, {"agentId": 7})
    stream = await chat(http, {"agentId": "echo", "conversationId": "c", "text": ["hi"]})

    refused(response, 200, 10400, "agentId must be a string, not int")
    [frame] = stream.bodies
    failed(frame, 10400, "text must be a string, not array")


async def test_a_query_value_out_of_range_is_10400_naming_it(http: httpx.AsyncClient) -> None:
    query = {"pageSize": "500"}
    headers = ACME.headers("GET", AGENTS, query=query)

    response = await http.get(AGENTS, params=query, headers=headers)

    refused(response, 200, 10400, "pageSize must be an integer from 1 to 100")


async def test_an_unknown_conversation_is_one_10404_frame(http: httpx.AsyncClient) -> None:
    body = {"agentId": "echo", "conversationId": uuid.uuid4().hex, "text": "hello"}

    stream = await chat(http, body)

    [frame] = stream.bodies
    failed(frame, 10404, "Conversation not found")
    assert stream.events[0].id is None


async def test_an_agent_id_not_of_the_conversation_is_10400(http: httpx.AsyncClient) -> None:
    conversation = await new_conversation(http)

    stream = await chat(http, {"agentId": "default", "conversationId": conversation, "text": "hi"})

    [frame] = stream.bodies
    failed(frame, 10400, f"agentId default is not the agent of conversation {conversation}")


async def test_a_request_with_no_body_is_10400_agent_id_is_required(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post(CONVERSATION, headers=native("sk-plain-1"))

    refused(response, 200, 10400, "agentId is required")


async def test_an_error_frame_is_event_stream_with_one_charset(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/stream", headers=native("sk-plain-1"))

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.text.startswith('data: {"code":10400,')


async def test_the_document_says_a_chat_body_may_be_left_out(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/schema/openapi.json")).json()["paths"]

    required = [paths[path]["post"]["requestBody"]["required"] for path in (CONVERSATION, STREAM)]

    assert required == [False, False]


async def test_the_document_says_a_200_answer_may_be_a_failure_envelope(
    http: httpx.AsyncClient,
) -> None:
    document = (await http.get("/schema/openapi.json")).json()
    answer = document["paths"][CONVERSATION]["post"]["responses"]["200"]["content"]
    named = answer["application/json"]["schema"]["$ref"].removeprefix("#/components/schemas/")

    fields = document["components"]["schemas"][named]["properties"]

    assert fields["success"] == {"type": "boolean"}
    assert {"type": "null"} in fields["data"]["anyOf"]


async def test_the_document_states_the_agent_list_paging(http: httpx.AsyncClient) -> None:
    document = (await http.get("/schema/openapi.json")).json()

    parameters = document["paths"][AGENTS]["get"]["parameters"]

    shapes = {p["name"]: (p["in"], p["schema"]) for p in parameters}
    counted = {"type": "integer", "minimum": 1, "description": ANY}
    assert shapes == {
        "pageNum": ("query", {**counted, "maximum": 100_000, "default": 1}),
        "pageSize": ("query", {**counted, "maximum": 100, "default": 20}),
    }


async def test_the_agent_list_pages_by_page_num_and_page_size(http: httpx.AsyncClient) -> None:
    query = {"pageNum": "2", "pageSize": "1"}
    headers = ACME.headers("GET", AGENTS, query=query)

    listed = ok_data(await http.get(AGENTS, params=query, headers=headers))

    assert (listed["pageNum"], listed["pageSize"], len(listed["list"])) == (2, 1, 1)
    assert listed["list"][0]["agentId"] == "echo"  # agentId order: default, echo, ...


async def test_litestars_own_errors_come_in_the_envelope(http: httpx.AsyncClient) -> None:
    wrong_method = await http.get(CONVERSATION, headers=native("sk-plain-1"))
    no_route = await http.get("/v1/chat/nowhere", headers=native("sk-plain-1"))

    refused(wrong_method, 405, 10405, "GET is not allowed on /v1/chat/conversation")
    refused(no_route, 404, 10404, "no route for GET /v1/chat/nowhere")


async def test_a_key_over_its_rate_limit_gets_10429_at_http_200_with_retry_after(
    http: httpx.AsyncClient,
) -> None:
    key = native("sk-throttled-1")
    ok_data(await http.post(CONVERSATION, json={"agentId": "echo"}, headers=key))

    response = await http.post(CONVERSATION, json={"agentId": "echo"}, headers=key)

    refused(response, 200, 10429, "Too many requests, please try again later")
    assert int(response.headers["retry-after"]) >= 1


async def test_a_turn_over_the_concurrency_cap_is_one_10429_frame(http: httpx.AsyncClient) -> None:
    key = Signer("sk-capped-1", "")
    first, second = [await new_conversation(http, signer=key) for _ in range(2)]
    running = {"agentId": "echo", "conversationId": first, "text": words(100)}
    async with open_chat(http, running, signer=key) as response:
        await read_frames(response, limit=1)

        refused_turn = await chat(http, {**running, "conversationId": second}, signer=key)

        [frame] = refused_turn.bodies
        failed(frame, 10429, "Too many requests, please try again later")
        assert refused_turn.response.headers["retry-after"] == "1"
        await http.post(f"/v1/sessions/{first}/cancel", headers=native("sk-capped-1"))


async def test_a_key_past_its_usage_quota_gets_10430(http: httpx.AsyncClient) -> None:
    key = Signer("sk-metered-1", "")
    conversation = await new_conversation(http, signer=key)
    body = {"agentId": "echo", "conversationId": conversation, "text": "once"}
    assert (await chat(http, body, signer=key)).final["content"] == "once"

    again = await chat(http, body, signer=key)

    [frame] = again.bodies
    failed(frame, 10430, "API key usage limit reached")


# --- the whole flow --------------------------------------------------------------------------


async def test_agents_conversation_two_streamed_turns_and_a_resume_match_native(
    http: httpx.AsyncClient,
) -> None:
    query = {"pageSize": "100", "pageNum": "1", "lang": ""}  # signed sorted, "" left out
    listed = ok_data(
        await http.get(AGENTS, params=query, headers=ACME.headers("GET", AGENTS, query=query))
    )
    assert {"agentId": "echo", "name": "Echo (synthetic)"}.items() <= next(
        a for a in listed["list"] if a["agentId"] == "echo"
    ).items()
    assert listed["total"] >= 2 and (listed["pageNum"], listed["pageSize"]) == (1, 100)
    conversation = await new_conversation(http)

    first_text = words(30)
    sent = time.monotonic()
    first = await chat(
        http, {"agentId": "echo", "conversationId": conversation, "text": first_text}
    )

    assert first.text == first.final["content"] == expected_reply("echo", first_text)
    arrivals = [event.received_at - sent for event in first.events]
    assert len(first.deltas) >= 3 and arrivals[-1] - arrivals[0] >= 0.3, arrivals
    outputs = [chunk["usage"]["outputTokens"] for chunk in first.deltas]
    assert outputs == sorted(outputs) and first.final["usage"]["outputTokens"] == 30
    assert {c["conversationId"] for c in [*first.deltas, first.final]} == {conversation}

    second_text = words(60, "v")
    body = {"agentId": "echo", "conversationId": conversation, "text": second_text}
    async with open_chat(http, body) as response:
        head = await read_frames(response, limit=2)
    assert not head.bodies[-1]["data"]["finished"]
    rest = await chat(http, body, last_event_id=head.ids[-1])

    assert head.text + rest.text == rest.final["content"] == expected_reply("echo", second_text)
    ids = [_key(event_id) for event_id in head.ids + rest.ids]
    assert ids == sorted(set(ids)), ids  # in order, nothing doubled
    stored = await _stored(http, conversation)
    assert [x["response"]["text"] for x in stored] == [
        first.final["content"],
        rest.final["content"],
    ]
    assert stored[1]["usage"]["outputTokens"] == rest.final["usage"]["outputTokens"]


def _key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq)


async def _stored(http: httpx.AsyncClient, conversation: str) -> list[dict[str, object]]:
    response = await http.get(f"/v1/sessions/{conversation}/exchanges", headers=native())
    assert response.status_code == 200, response.text
    data: list[dict[str, object]] = response.json()["data"]
    return data


async def test_the_user_id_header_becomes_the_sessions_user_id(http: httpx.AsyncClient) -> None:
    signer = Signer("sk-live-1", "s3cret", user_id="user-42")

    conversation = await new_conversation(http, signer=signer)

    session = await http.get(f"/v1/sessions/{conversation}", headers=native())
    assert session.json()["userId"] == "user-42"


async def test_a_turn_while_one_is_running_gets_the_busy_answer(http: httpx.AsyncClient) -> None:
    conversation = await new_conversation(http)
    body = {"agentId": "echo", "conversationId": conversation, "text": words(100)}
    async with open_chat(http, body) as running:
        await read_frames(running, limit=1)

        second = await chat(http, {**body, "text": "me too"})

        [frame] = second.bodies
        failed(frame, 10409, "a reply is already running for this conversation")
        cancel = f"/v1/sessions/{conversation}/cancel"
        assert (await http.post(cancel, headers=native())).status_code == 200
