"""Every bad request gets its status and the error envelope, and changes nothing stored.

"Nothing stored changes" is checked by a snapshot (type and DUMP of every key under the
server's key prefix) before and after the bad request.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from server.embedded_redis import RedisProcess
from tests.conftest import RedisFactory
from tests.support.native import (
    assert_error,
    blocking_continue,
    continue_body,
    create_session,
    own_server,
    snapshot,
    stream_reply,
)
from tests.support.servers import ServerFactory, ServerProcess

MAX_BODY_BYTES = 4096
MAX_INPUT_CHARS = 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServerProcess]:
    env = {
        "PARLEY_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "PARLEY_MAX_INPUT_CHARS": str(MAX_INPUT_CHARS),
    }
    with own_server(tmp_path_factory.mktemp("errors-server"), redis_url, env) as started:
        yield started


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client() as client:
        yield client


@pytest.fixture
async def sid(http: httpx.AsyncClient) -> str:
    """A session with one finished exchange, so there is stored data to leave alone."""
    session = await create_session(http, agentId="echo", title="kept", metadata={"k": "v"})
    await blocking_continue(http, session["conversationId"], "hello there")
    return str(session["conversationId"])


@asynccontextmanager
async def nothing_changes(server: ServerProcess) -> AsyncIterator[None]:
    before = await snapshot(server.redis_url, server.key_prefix)
    assert before, "the snapshot should hold the test's session"
    yield
    assert await snapshot(server.redis_url, server.key_prefix) == before


def _path(sid: str, endpoint: str) -> tuple[str, str]:
    return {
        "create": ("POST", "/v1/sessions"),
        "patch": ("PATCH", f"/v1/sessions/{sid}"),
        "blockingContinue": ("POST", f"/v1/sessions/{sid}/blockingContinue"),
        "streamingContinue": ("POST", f"/v1/sessions/{sid}/streamingContinue"),
        "batchDelete": ("POST", "/v1/sessions/batchDelete"),
    }[endpoint]


async def _send(http: httpx.AsyncClient, sid: str, endpoint: str, body: Any) -> httpx.Response:
    method, url = _path(sid, endpoint)
    if isinstance(body, bytes):
        headers = {"content-type": "application/json"}
        return await http.request(method, url, content=body, headers=headers)
    return await http.request(method, url, json=body)


@pytest.mark.parametrize(
    "endpoint", ["create", "patch", "blockingContinue", "streamingContinue", "batchDelete"]
)
async def test_malformed_json_gets_400_and_changes_nothing(
    http: httpx.AsyncClient, server: ServerProcess, sid: str, endpoint: str
) -> None:
    async with nothing_changes(server):
        response = await _send(http, sid, endpoint, b'{"userInput": {"text": "hi"')

    error = assert_error(response, 400, "invalid_request")
    assert "json" in error["message"].lower()


@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [
        ("create", {"refreshIntervalMs": "fast"}, "refreshIntervalMs"),
        ("create", {"title": 5}, "title"),
        ("create", {"metadata": {"team": 1}}, "metadata"),
        ("create", {"agentId": ["echo"]}, "agentId"),
        ("create", {"titel": "typo"}, "titel"),
        ("patch", {"refreshIntervalMs": 1.5}, "refreshIntervalMs"),
        ("patch", {"metadata": "none"}, "metadata"),
        ("blockingContinue", {"userInput": {"text": 5}}, "userInput.text"),
        ("blockingContinue", {"userInput": "hi"}, "userInput"),
        ("blockingContinue", {}, "userInput"),
        ("streamingContinue", {"userInput": {"text": "hi"}, "messageId": 7}, "messageId"),
        ("streamingContinue", {"userInput": {"text": None}}, "userInput.text"),
        ("batchDelete", {"conversationIds": "abc"}, "conversationIds"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
async def test_a_wrong_type_gets_400_naming_the_field(
    http: httpx.AsyncClient,
    server: ServerProcess,
    sid: str,
    endpoint: str,
    body: dict[str, Any],
    field: str,
) -> None:
    async with nothing_changes(server):
        response = await _send(http, sid, endpoint, body)

    error = assert_error(response, 400, "invalid_request")
    assert field in error["message"], error


@pytest.mark.parametrize("endpoint", ["create", "patch"])
@pytest.mark.parametrize("interval", [49, 5001, 0, -100])
async def test_a_refresh_interval_outside_50_to_5000_gets_400_saying_the_range(
    http: httpx.AsyncClient, server: ServerProcess, sid: str, endpoint: str, interval: int
) -> None:
    async with nothing_changes(server):
        response = await _send(http, sid, endpoint, {"refreshIntervalMs": interval})

    error = assert_error(response, 400)
    assert "refreshIntervalMs" in error["message"]
    assert "50" in error["message"] and "5000" in error["message"], error


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "16"),
        ({"metadata": {"k" * 65: "v"}}, "64"),
        ({"metadata": {"k": "v" * 513}}, "512"),
        ({"title": "t" * 201}, "title"),
    ],
    ids=["17-pairs", "long-key", "long-value", "long-title"],
)
async def test_metadata_and_title_over_their_limits_get_400(
    http: httpx.AsyncClient, server: ServerProcess, sid: str, body: dict[str, Any], problem: str
) -> None:
    async with nothing_changes(server):
        response = await _send(http, sid, "create", body)

    error = assert_error(response, 400)
    assert problem in error["message"], error


@pytest.mark.parametrize("endpoint", ["blockingContinue", "streamingContinue"])
@pytest.mark.parametrize("text", ["", "   \n\t"], ids=["empty", "blank"])
async def test_an_empty_user_input_gets_400(
    http: httpx.AsyncClient, server: ServerProcess, sid: str, endpoint: str, text: str
) -> None:
    async with nothing_changes(server):
        response = await _send(http, sid, endpoint, continue_body(text))

    error = assert_error(response, 400)
    assert "userInput.text" in error["message"]


@pytest.mark.parametrize("endpoint", ["blockingContinue", "streamingContinue"])
async def test_an_oversized_user_input_gets_400_naming_the_limit(
    http: httpx.AsyncClient, server: ServerProcess, sid: str, endpoint: str
) -> None:
    async with nothing_changes(server):
        response = await _send(http, sid, endpoint, continue_body("x" * (MAX_INPUT_CHARS + 1)))

    error = assert_error(response, 400)
    assert "userInput.text" in error["message"]
    assert str(MAX_INPUT_CHARS) in error["message"]


async def test_a_user_input_at_the_limit_is_accepted(http: httpx.AsyncClient, sid: str) -> None:
    exchange = await blocking_continue(http, sid, "x" * MAX_INPUT_CHARS)

    assert exchange["status"] == "completed"


@pytest.mark.parametrize("endpoint", ["create", "blockingContinue", "streamingContinue"])
async def test_a_body_over_the_limit_gets_413(
    http: httpx.AsyncClient, server: ServerProcess, sid: str, endpoint: str
) -> None:
    body = continue_body("x" * MAX_BODY_BYTES) if "Continue" in endpoint else {"title": "x" * 5000}
    async with nothing_changes(server):
        response = await _send(http, sid, endpoint, body)

    assert_error(response, 413, "body_too_large")


async def test_a_chunked_body_over_the_limit_gets_413(
    http: httpx.AsyncClient, server: ServerProcess, sid: str
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"userInput": {"text": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}}'

    async with nothing_changes(server):
        response = await http.post(
            f"/v1/sessions/{sid}/blockingContinue",
            content=chunks(),
            headers={"content-type": "application/json"},
        )

    assert_error(response, 413, "body_too_large")


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PATCH", "", {"title": "new"}),
        ("DELETE", "", None),
        ("GET", "/exchanges", None),
        ("POST", "/blockingContinue", continue_body("hi")),
        ("POST", "/streamingContinue", continue_body("hi")),
        ("POST", "/cancel", {}),
        ("GET", "/stream", None),
    ],
    ids=lambda value: value if isinstance(value, str) and value else None,
)
async def test_an_unknown_session_gets_404(
    http: httpx.AsyncClient,
    server: ServerProcess,
    sid: str,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    unknown = "0" * 32
    async with nothing_changes(server):
        response = await http.request(method, f"/v1/sessions/{unknown}{suffix}", json=body)

    error = assert_error(response, 404, "not_found")
    assert unknown in error["message"]


async def test_an_unknown_agent_gets_404(
    http: httpx.AsyncClient, server: ServerProcess, sid: str
) -> None:
    async with nothing_changes(server):
        response = await http.post("/v1/sessions", json={"agentId": "no-such-agent"})

    error = assert_error(response, 404, "not_found")
    assert "no-such-agent" in error["message"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"sort": "title"}, "sort"),
        ({"order": "sideways"}, "order"),
        ({"status": "asleep"}, "status"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else None,
)
async def test_bad_list_parameters_get_400_naming_the_parameter(
    http: httpx.AsyncClient, server: ServerProcess, sid: str, params: dict[str, Any], field: str
) -> None:
    async with nothing_changes(server):
        response = await http.get("/v1/sessions", params=params)

    error = assert_error(response, 400)
    assert field in error["message"], error


async def test_a_request_id_from_the_client_is_echoed_on_errors(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/v1/sessions/{'0' * 32}", headers={"X-Request-Id": "trace-42"})

    assert_error(response, 404)
    assert response.json()["requestId"] == "trace-42"


async def test_redis_unreachable_gets_503_with_retry_after_and_loses_nothing(
    redis_factory: RedisFactory, server_factory: ServerFactory
) -> None:
    redis: RedisProcess = redis_factory(appendonly=True)
    server = server_factory(redis_url=redis.url)
    async with server.client() as client:
        session = await create_session(client, agentId="echo")
        sid = session["conversationId"]
        await stream_reply(client, sid, "before the outage")
        before = await snapshot(redis.url, server.key_prefix)
        redis.stop()

        started = time.monotonic()
        responses = [
            await client.post("/v1/sessions", json={"agentId": "echo"}),
            await client.get(f"/v1/sessions/{sid}"),
            await client.get("/v1/sessions"),
            await client.patch(f"/v1/sessions/{sid}", json={"title": "lost?"}),
            await client.post(f"/v1/sessions/{sid}/blockingContinue", json=continue_body("hi")),
            await client.post(f"/v1/sessions/{sid}/streamingContinue", json=continue_body("hi")),
        ]
        elapsed = time.monotonic() - started
        ready = await client.get("/readyz")

        redis.start()
        after = await snapshot(redis.url, server.key_prefix)

    for response in responses:
        error = assert_error(response, 503)
        assert "redis" in error["message"].lower()
        assert int(response.headers["retry-after"]) > 0
    assert ready.status_code == 503
    assert elapsed < 15, f"503s took {elapsed:.1f}s"
    assert after == before


@pytest.mark.parametrize("endpoint", ["blockingContinue", "streamingContinue"])
async def test_a_reused_message_id_gets_409_and_changes_nothing(
    http: httpx.AsyncClient, server: ServerProcess, sid: str, endpoint: str
) -> None:
    first = await _send(http, sid, "blockingContinue", continue_body("once", messageId="m-1"))
    assert first.status_code == 200

    async with nothing_changes(server):
        response = await _send(http, sid, endpoint, continue_body("twice", messageId="m-1"))

    error = assert_error(response, 409)
    assert "m-1" in error["message"]


async def test_a_message_id_it_cannot_use_gets_400(
    http: httpx.AsyncClient, server: ServerProcess, sid: str
) -> None:
    async with nothing_changes(server):
        response = await _send(http, sid, "blockingContinue", continue_body("hi", messageId="a b"))

    error = assert_error(response, 400)
    assert "messageId" in error["message"]
