"""Bodies and headers at the limits: every surface refuses them in its own envelope, with a
message that says what was wrong, keeps serving, and stores nothing.

One server with the default limits (1 MiB bodies, 16 KiB per header, 64 KiB of headers).
"Nothing stored changes" is checked twice: the session read back through ``/v1`` is the same,
and so is every key under the server's prefix.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support.native import assert_error, own_server, snapshot
from tests.support.servers import ServerProcess

Json = dict[str, Any]
MAX_BODY_BYTES = 1_048_576
PALANTIR = "/api/v2/aipAgents/agents/ri.aip-agents..agent.echo"
QODER = "/api/v1/cloud"
ANTHROPIC = "/anthropic/v1"
ENVIRONMENTS = f"{ANTHROPIC}/environments"
DEEP = b"[" * 10_000 + b"]" * 10_000
BAD_UTF8 = b"\xff\xfe"
MEGABYTE_TITLE = "x" * 1_000_000
LONG_EVENT_ID = "1" * 10_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServerProcess]:
    with own_server(tmp_path_factory.mktemp("input-limits"), redis_url) as started:
        yield started


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client() as client:
        yield client


# --- sessions to leave alone, one per surface --------------------------------------------


@dataclass(frozen=True)
class Target:
    """A session as one surface names it: ``sid`` is the engine's id (``/v1``'s)."""

    surface: str
    sid: str
    url: str


def _json(response: httpx.Response, status: int = 200) -> Json:
    assert response.status_code == status, response.text
    body: Json = response.json()
    return body


async def new_target(http: httpx.AsyncClient, surface: str) -> Target:
    """A session with a title and metadata where the surface has them."""
    kept = {"title": "kept", "metadata": {"k": "v"}}
    if surface == "native":
        body = _json(await http.post("/v1/sessions", json={"agentId": "echo", **kept}), 201)
        sid = body["conversationId"]
        return Target(surface, sid, f"/v1/sessions/{sid}")
    if surface == "agno":
        fields = {"agent_id": "echo", "session_name": "kept", "metadata": {"k": "v"}}
        sid = (_json(await http.post("/sessions", json=fields), 201))["session_id"]
        return Target(surface, sid, f"/sessions/{sid}")
    if surface == "palantir":
        rid = (_json(await http.post(f"{PALANTIR}/sessions", json={})))["rid"]
        return Target(surface, rid.rpartition(".")[2], f"{PALANTIR}/sessions/{rid}")
    if surface == "openviking":
        sid = (_json(await http.post("/api/v1/sessions", json={})))["result"]["session_id"]
        return Target(surface, sid, f"/api/v1/sessions/{sid}")
    if surface == "sonaops":
        made = _json(await http.post("/v1/chat/conversation", json={"agentId": "echo"}))
        return Target(surface, made["data"]["conversationId"], "/v1/chat")
    mount = ANTHROPIC if surface == "anthropic" else QODER
    env = _json(await http.post(f"{mount}/environments", json={"name": _name()}))
    fields = {"agent": "echo", "environment_id": env["id"], **kept}
    sid = (_json(await http.post(f"{mount}/sessions", json=fields), 201))["id"]
    return Target(surface, sid.removeprefix("sess_"), f"{mount}/sessions/{sid}")


def _name() -> str:
    return f"env-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def nothing_changes(
    server: ServerProcess, http: httpx.AsyncClient, target: Target
) -> AsyncIterator[None]:
    """The target session reads back the same through ``/v1``, and no key changed."""
    before = await _read_back(http, target)
    keys = await snapshot(server.redis_url, server.key_prefix)
    yield
    assert await _read_back(http, target) == before
    assert await snapshot(server.redis_url, server.key_prefix) == keys


async def _read_back(http: httpx.AsyncClient, target: Target) -> tuple[Json, Json]:
    session = _json(await http.get(f"/v1/sessions/{target.sid}"))
    exchanges = _json(await http.get(f"/v1/sessions/{target.sid}/exchanges"))
    return session, exchanges


async def still_serving(server: ServerProcess, http: httpx.AsyncClient) -> None:
    assert server.running
    assert (await http.get("/healthz")).status_code == 200


# --- each surface's envelope --------------------------------------------------------------


def refusal(response: httpx.Response, surface: str, status: int) -> str:
    """The refusal's message, once its status and envelope are the surface's own."""
    assert response.status_code == status, response.text
    if surface == "native":
        return str(assert_error(response, status)["message"])
    body = _body(response)
    if surface == "palantir":
        assert set(body) == {"errorCode", "errorName", "errorInstanceId", "parameters"}, body
        return str(body["parameters"].get("message", body["errorName"]))
    if surface == "agno":
        detail = body["detail"]
        return str(detail if isinstance(detail, str) else detail[0]["msg"])
    if surface == "openviking":
        assert body["status"] == "error", body
        return str(body["error"]["message"])
    if surface == "sonaops":
        assert body["success"] is False and body["code"] == 10_000 + (
            400 if status == 200 else status
        ), body
        return str(body["message"])
    assert body["type"] == "error" and body["request_id"].startswith("req_"), body
    return str(body["error"]["message"])


def _body(response: httpx.Response) -> Json:
    """JSON, or the one ``data:`` frame of an SSE error (Sonaops's stream)."""
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        assert len(data) == 1, response.text
        frame: Json = json.loads(data[0])
        return frame
    body: Json = response.json()
    return body


# Which HTTP status each surface refuses a bad body with: Agno answers validation as FastAPI
# does (422), Sonaops answers business errors with HTTP 200 and a 10400 code.
BAD_BODY = {
    "native": 400,
    "palantir": 400,
    "agno": 422,
    "openviking": 400,
    "sonaops": 200,
    "qoder": 400,
    "anthropic": 400,
}


@dataclass(frozen=True)
class Call:
    """A request to a target's surface: an absolute ``path``, or one under the target's URL
    (empty: the target itself)."""

    surface: str
    method: str
    path: str
    body: Json = field(default_factory=dict)
    status: int | None = None

    def url(self, target: Target) -> str:
        if self.path.startswith("/") or not self.path:
            return self.path or target.url
        return f"{target.url}/{self.path}"

    def expected(self) -> int:
        return self.status if self.status is not None else BAD_BODY[self.surface]


def ids(call: Call) -> str:
    return f"{call.surface}-{call.method}-{call.path.strip('/').replace('/', '-') or 'session'}"


async def send(
    http: httpx.AsyncClient,
    call: Call,
    target: Target,
    *,
    raw: bytes | None = None,
    body: Json | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    content = raw if raw is not None else json.dumps(call.body if body is None else body).encode()
    headers = {"content-type": "application/json", **(headers or {})}
    return await http.request(call.method, call.url(target), content=content, headers=headers)


# --- 431: headers ---------------------------------------------------------------------------

# A request on each surface that would store something if it went through.
CREATES = [
    Call("native", "POST", "/v1/sessions", {"agentId": "echo"}),
    Call("palantir", "POST", f"{PALANTIR}/sessions"),
    Call("agno", "POST", "/sessions", {"agent_id": "echo"}),
    Call("openviking", "POST", "/api/v1/sessions"),
    Call("sonaops", "POST", "/v1/chat/conversation", {"agentId": "echo"}),
    Call("qoder", "POST", f"{QODER}/environments", {"name": "never"}),
    Call("anthropic", "POST", ENVIRONMENTS, {"name": "never"}),
]


@pytest.mark.parametrize("call", CREATES, ids=ids)
async def test_a_64_kib_header_is_refused_with_431_on_every_surface(
    server: ServerProcess, http: httpx.AsyncClient, call: Call
) -> None:
    target = await new_target(http, "native")
    async with nothing_changes(server, http, target):
        response = await send(http, call, target, headers={"x-padding": "a" * 65_536})

    message = refusal(response, call.surface, 431)
    assert "x-padding" in message and "16384" in message, message
    await still_serving(server, http)


@pytest.mark.parametrize("call", CREATES, ids=ids)
async def test_a_mebibyte_of_headers_is_refused_with_431_on_every_surface(
    server: ServerProcess, http: httpx.AsyncClient, call: Call
) -> None:
    headers = {f"x-padding-{i}": "a" * 13_000 for i in range(81)}  # each within its own limit
    target = await new_target(http, "native")
    async with nothing_changes(server, http, target):
        response = await send(http, call, target, headers=headers)

    message = refusal(response, call.surface, 431)
    assert "65536" in message and "headers total" in message, message
    await still_serving(server, http)


async def test_headers_within_the_limits_are_served(http: httpx.AsyncClient) -> None:
    headers = {"x-one": "a" * 16_000, **{f"x-more-{i}": "b" * 15_000 for i in range(3)}}

    response = await http.post("/v1/sessions", json={"agentId": "echo"}, headers=headers)

    assert response.status_code == 201, response.text


async def test_a_431_carries_the_request_id(http: httpx.AsyncClient) -> None:
    headers = {"x-padding": "a" * 20_000, "x-request-id": "trace-431"}

    response = await http.get("/v1/sessions", headers=headers)

    assert_error(response, 431, "headers_too_large")
    assert response.json()["requestId"] == "trace-431"


# --- deeply nested and undecodable JSON ----------------------------------------------------

BODIES = [
    Call("native", "POST", "/v1/sessions"),
    Call("native", "PATCH", ""),
    Call("native", "POST", "blockingContinue"),
    Call("palantir", "POST", f"{PALANTIR}/sessions"),
    Call("palantir", "POST", "blockingContinue"),
    Call("agno", "POST", "/sessions"),
    Call("agno", "PATCH", ""),
    Call("openviking", "POST", "/api/v1/sessions"),
    Call("openviking", "POST", "messages"),
    Call("sonaops", "POST", "/v1/chat/conversation"),
    Call("sonaops", "POST", "/v1/chat/stream"),
    Call("qoder", "POST", f"{QODER}/sessions"),
    Call("qoder", "POST", ""),
    Call("anthropic", "POST", "events"),
]


def nested(call: Call) -> bytes:
    """10,000 levels where the surface's decoder must descend: Qoder's refuse unknown fields,
    so there the nesting goes in a free-form one."""
    if call.surface == "qoder":
        head = b'{"agent": "echo", "environment_id": "env_x", ' if call.path else b"{"
        return head + b'"budget": {"x": ' + DEEP + b"}}"
    if call.surface == "anthropic":
        return b'{"events": [{"x": ' + DEEP + b"}]}"
    return b'{"x": ' + DEEP + b"}"


@pytest.mark.parametrize("call", BODIES, ids=ids)
async def test_json_nested_10000_levels_deep_is_refused_on_every_surface(
    server: ServerProcess, http: httpx.AsyncClient, call: Call
) -> None:
    target = await new_target(http, call.surface)
    async with nothing_changes(server, http, target):
        response = await send(http, call, target, raw=nested(call))

    message = refusal(response, call.surface, call.expected())
    assert "nests deeper" in message and "500 levels" in message, message
    await still_serving(server, http)


async def test_json_nested_under_500_levels_is_read(http: httpx.AsyncClient) -> None:
    state = b'{"session_state": {"x": ' + b"[" * 499 + b"]" * 499 + b"}}"

    response = await http.post(
        "/sessions", content=state, headers={"content-type": "application/json"}
    )

    assert response.status_code == 201, response.text[:200]


def undecodable(call: Call) -> bytes:
    """Bytes that are not UTF-8 in a field the surface reads, or (Sonaops) one it ignores."""
    if call.surface == "anthropic":
        return b'{"events": [{"text": "' + BAD_UTF8 + b'"}]}'
    return b'{"title": "' + BAD_UTF8 + b'"}'


@pytest.mark.parametrize("call", BODIES, ids=ids)
async def test_invalid_utf8_in_a_json_body_is_refused_on_every_surface(
    server: ServerProcess, http: httpx.AsyncClient, call: Call
) -> None:
    target = await new_target(http, call.surface)
    async with nothing_changes(server, http, target):
        response = await send(http, call, target, raw=undecodable(call))

    message = refusal(response, call.surface, call.expected())
    assert "not valid JSON" in message, message
    await still_serving(server, http)


# --- titles ---------------------------------------------------------------------------------

TITLES = [
    (Call("native", "POST", "/v1/sessions", {"title": MEGABYTE_TITLE}), "title", "200"),
    (Call("native", "PATCH", "", {"title": MEGABYTE_TITLE}), "title", "200"),
    (Call("agno", "POST", "/sessions", {"session_name": MEGABYTE_TITLE}), "session_name", "200"),
    (Call("agno", "POST", "rename", {"session_name": MEGABYTE_TITLE}), "session_name", "200"),
    (Call("agno", "PATCH", "", {"session_name": MEGABYTE_TITLE}), "session_name", "200"),
    (Call("palantir", "PUT", "updateTitle", {"title": MEGABYTE_TITLE}), "title", "10000"),
    (Call("qoder", "POST", "", {"title": MEGABYTE_TITLE}), "title", "200"),
    (Call("anthropic", "POST", "", {"title": MEGABYTE_TITLE}), "title", "200"),
]


@pytest.mark.parametrize(
    ("call", "name", "limit"), TITLES, ids=[ids(call) for call, _, _ in TITLES]
)
async def test_a_1_mb_title_is_refused_naming_the_field_and_its_maximum(
    server: ServerProcess, http: httpx.AsyncClient, call: Call, name: str, limit: str
) -> None:
    target = await new_target(http, call.surface)
    async with nothing_changes(server, http, target):
        response = await send(http, call, target)

    message = refusal(response, call.surface, call.expected())
    assert f"at most {limit} characters" in message, message
    if call.surface == "agno":
        assert response.json()["detail"][0]["loc"] == ["body", name]
    else:
        assert name in message, message
    await still_serving(server, http)


@pytest.mark.parametrize(
    ("size", "status"), [(MAX_BODY_BYTES - 1, 400), (MAX_BODY_BYTES + 1, 413)], ids=str
)
async def test_a_title_filling_the_body_limit_is_refused_for_its_length_or_the_body_size(
    server: ServerProcess, http: httpx.AsyncClient, size: int, status: int
) -> None:
    envelope = b'{"title": ""}'
    raw = envelope[:-2] + b"x" * (size - len(envelope)) + envelope[-2:]
    assert len(raw) == size
    target = await new_target(http, "native")
    async with nothing_changes(server, http, target):
        response = await send(http, Call("native", "PATCH", ""), target, raw=raw)

    error = assert_error(response, status)
    if status == 400:
        assert error["message"] == "title: must be at most 200 characters", error
    else:
        assert error["code"] == "body_too_large", error
    await still_serving(server, http)


# --- control characters and long ids -----------------------------------------------------

CONTROLS = [
    (Call("native", "POST", "/v1/sessions", {"userId": "u\u0000x"}), "userId"),
    (Call("native", "POST", "/v1/sessions", {"title": "a\nb"}), "title"),
    (Call("native", "PATCH", "", {"title": "a\u0000b"}), "title"),
    (Call("native", "PATCH", "", {"metadata": {"k\u0000": "v"}}), "metadata key"),
    (Call("native", "POST", "/v1/agents", {"agentId": "nul-name", "name": "a\u0000"}), "name"),
    (Call("agno", "POST", "/sessions", {"user_id": "u\u0000x"}), "user_id"),
    (Call("agno", "POST", "/sessions", {"session_id": "s\u0000x"}), "session_id"),
    (Call("agno", "PATCH", "", {"session_name": "a\u0000b"}), "session_name"),
    (Call("palantir", "PUT", "updateTitle", {"title": "a\u0000b"}), "title"),
    (Call("openviking", "POST", "/api/v1/sessions", {"session_id": "s\u0000x"}), "session_id"),
    (Call("qoder", "POST", "", {"title": "a\u0000b"}), "title"),
    (Call("qoder", "POST", "", {"metadata": {"k\u0000": "v"}}), "metadata key"),
    (Call("anthropic", "POST", ENVIRONMENTS, {"name": "e\u0000"}), "name"),
]


@pytest.mark.parametrize(
    ("call", "name"), CONTROLS, ids=[f"{ids(call)}-{name}" for call, name in CONTROLS]
)
async def test_control_characters_in_ids_and_names_are_refused_naming_the_field(
    server: ServerProcess, http: httpx.AsyncClient, call: Call, name: str
) -> None:
    target = await new_target(http, call.surface)
    async with nothing_changes(server, http, target):
        response = await send(http, call, target)

    expected = 400 if "session_id" in name else call.expected()
    message = refusal(response, call.surface, expected)
    if call.surface == "agno" and expected == 422:
        assert response.json()["detail"][0]["loc"] == ["body", name]
    else:
        assert name in message, message
    assert "control characters" in message or "letters, digits" in message, message
    await still_serving(server, http)


async def test_control_characters_in_an_agno_run_form_user_id_are_refused(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    target = await new_target(http, "agno")
    form = {"message": "hi", "stream": "false", "session_id": target.sid, "user_id": "u\x00x"}
    async with nothing_changes(server, http, target):
        response = await http.post("/agents/echo/runs", data=form)

    message = refusal(response, "agno", 422)
    assert response.json()["detail"][0]["loc"] == ["body", "user_id"]
    assert "control characters" in message, message
    await still_serving(server, http)


HEADER_IDS = [
    (Call("openviking", "POST", "/api/v1/sessions"), "X-OpenViking-User"),
    (Call("sonaops", "POST", "/v1/chat/conversation", {"agentId": "echo"}), "X-User-ID"),
]


@pytest.mark.parametrize(("call", "header"), HEADER_IDS, ids=[h for _, h in HEADER_IDS])
@pytest.mark.parametrize(
    ("value", "problem"), [("a\tb", "control characters"), ("u" * 129, "at most 128")]
)
async def test_a_user_id_header_with_a_tab_or_over_128_characters_is_refused(
    server: ServerProcess,
    http: httpx.AsyncClient,
    call: Call,
    header: str,
    value: str,
    problem: str,
) -> None:
    target = await new_target(http, "native")
    async with nothing_changes(server, http, target):
        response = await send(http, call, target, headers={header: value})

    message = refusal(response, call.surface, call.expected())
    assert header in message and problem in message, message
    await still_serving(server, http)


LONG_USER_IDS = [
    Call("native", "POST", "/v1/sessions", {"userId": "u" * 129}),
    Call("agno", "POST", "/sessions", {"user_id": "u" * 129}),
]


@pytest.mark.parametrize("call", LONG_USER_IDS, ids=ids)
async def test_a_user_id_over_128_characters_is_refused_naming_the_limit(
    server: ServerProcess, http: httpx.AsyncClient, call: Call
) -> None:
    target = await new_target(http, call.surface)
    async with nothing_changes(server, http, target):
        response = await send(http, call, target)

    assert "at most 128 characters" in refusal(response, call.surface, call.expected())
    await still_serving(server, http)


# --- resume ids -----------------------------------------------------------------------------

RESUMES = [
    (Call("native", "GET", "stream"), {"Last-Event-ID": LONG_EVENT_ID}, {}),
    (Call("native", "GET", "stream"), {}, {"lastEventId": LONG_EVENT_ID}),
    (Call("qoder", "GET", "events/stream"), {"Last-Event-ID": LONG_EVENT_ID}, {}),
    (Call("anthropic", "GET", "events/stream"), {"Last-Event-ID": "sevt_" + LONG_EVENT_ID}, {}),
    (Call("qoder", "GET", "events"), {}, {"after_id": LONG_EVENT_ID}),
    (Call("sonaops", "POST", "stream"), {"Last-Event-ID": LONG_EVENT_ID}, {}),
]


@pytest.mark.parametrize(
    ("call", "headers", "params"),
    RESUMES,
    ids=[f"{ids(c)}-{next(iter(h or p))}" for c, h, p in RESUMES],
)
async def test_a_10_kb_last_event_id_is_refused_on_every_resumable_stream(
    server: ServerProcess,
    http: httpx.AsyncClient,
    call: Call,
    headers: dict[str, str],
    params: dict[str, str],
) -> None:
    target = await new_target(http, call.surface)
    body = {"agentId": "echo", "conversationId": target.sid, "text": "hi"}
    async with nothing_changes(server, http, target):
        response = await http.request(
            call.method,
            call.url(target),
            headers=headers,
            params=params,
            json=body if call.method == "POST" else None,
        )

    message = refusal(response, call.surface, call.expected())
    named = next(iter(headers or params))
    assert named in message or (named == "lastEventId" and "Last-Event-ID" in message), message
    assert len(message) < 300, "the refusal repeats the whole id"
    await still_serving(server, http)


# --- free-form maps -------------------------------------------------------------------------

THOUSANDS = {f"k{i}": "v" for i in range(10_000)}
PARAMETERS = {f"p{i}": {"type": "string", "value": "v"} for i in range(10_000)}
MAPS = [
    (Call("native", "POST", "/v1/sessions", {"metadata": THOUSANDS}), "at most 16 pairs"),
    (Call("native", "PATCH", "", {"metadata": THOUSANDS}), "at most 16 pairs"),
    (Call("agno", "POST", "/sessions", {"metadata": THOUSANDS}), "at most 16 pairs"),
    (
        Call("agno", "PATCH", "", {"session_state": {f"k{i}": 0 for i in range(10_000)}}, 400),
        "larger than 65536 bytes",
    ),
    (Call("qoder", "POST", "", {"metadata": THOUSANDS}), "at most 16 pairs"),
    (
        Call("anthropic", "POST", ENVIRONMENTS, {"name": "e", "metadata": THOUSANDS}),
        "at most 16 pairs",
    ),
    (
        Call(
            "palantir",
            "POST",
            "blockingContinue",
            {"userInput": {"text": "hi"}, "parameterInputs": PARAMETERS},
        ),
        "more than 64 values",
    ),
]


@pytest.mark.parametrize(("call", "limit"), MAPS, ids=[ids(call) for call, _ in MAPS])
async def test_ten_thousand_keys_in_a_free_form_map_are_refused_naming_the_limit(
    server: ServerProcess, http: httpx.AsyncClient, call: Call, limit: str
) -> None:
    target = await new_target(http, call.surface)
    async with nothing_changes(server, http, target):
        response = await send(http, call, target)

    message = refusal(response, call.surface, call.expected())
    assert limit in message, message
    await still_serving(server, http)


# --- NUL in a path --------------------------------------------------------------------------

PATHS = [
    (Call("native", "GET", "/v1/sessions/ab%00cd"), 404),
    (Call("agno", "GET", "/sessions/ab%00cd"), 404),
    (Call("palantir", "GET", f"{PALANTIR}/sessions/ab%00cd"), 404),
    (Call("openviking", "DELETE", "/api/v1/sessions/ab%00cd"), 404),
    (Call("qoder", "GET", f"{QODER}/sessions/sess_ab%00cd"), 404),
    (Call("anthropic", "GET", f"{ANTHROPIC}/sessions/sess_ab%00cd"), 404),
]


@pytest.mark.parametrize(("call", "status"), PATHS, ids=[ids(call) for call, _ in PATHS])
async def test_a_nul_in_a_path_id_gets_a_clean_404(
    server: ServerProcess, http: httpx.AsyncClient, call: Call, status: int
) -> None:
    response = await http.request(call.method, call.path)

    message = refusal(response, call.surface, status)
    assert "notfound" in message.lower().replace(" ", ""), message
    await still_serving(server, http)
