"""Stream tokens: ``GET …/stream?token=`` instead of an API key in the URL."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.support.native import (
    assert_error,
    continue_body,
    create_sid,
    expected_reply,
    own_server,
    sessions_url,
    words,
)
from tests.support.servers import ServerFactory, ServerProcess
from tests.support.sse import delta_text, iter_events, open_stream, stream_events

ALICE, BOB = "alice-stream-key", "bob-stream-key"
KEYS = {"PARLEY_API_KEYS": f"{ALICE}=alice, {BOB}=bob"}
KEY_IN_URL = (
    "API keys are not accepted in URLs; POST /v1/sessions/{id}/streamTokens with the key in "
    "the Authorization header and pass ?token="
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServerProcess]:
    # A slow refill: every request of a test shows in RateLimit-Remaining.
    env = {**KEYS, "PARLEY_RATE_LIMIT_PER_SECOND": "0.001", "PARLEY_RATE_LIMIT_BURST": "1000"}
    with own_server(tmp_path_factory.mktemp("stream-tokens"), redis_url, env) as started:
        yield started


@pytest.fixture
async def alice(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client(headers={"Authorization": f"Bearer {ALICE}"}) as client:
        yield client


@pytest.fixture
async def bob(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client(headers={"Authorization": f"Bearer {BOB}"}) as client:
        yield client


@pytest.fixture
async def anonymous(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client() as client:
        yield client


async def mint(client: httpx.AsyncClient, sid: str) -> str:
    response = await client.post(sessions_url(sid, "/streamTokens"))
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def join(client: httpx.AsyncClient, sid: str, **params: str) -> httpx.Response:
    return await client.get(sessions_url(sid, "/stream"), params=params)


async def start_reply(client: httpx.AsyncClient, sid: str, text: str) -> None:
    """Start a streamed reply and hang up after ``started``; the reply keeps running."""
    url = sessions_url(sid, "/streamingContinue")
    async with open_stream(client, "POST", url, json_body=continue_body(text)) as response:
        assert response.status_code == 200
        async for event in iter_events(response):
            if event.event == "started":
                return
    raise AssertionError("the stream ended before `started`")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: str) -> list[Any]:
    body = token.split(".")[0]
    claims: list[Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims


# --- minting ------------------------------------------------------------------------------------


async def test_a_token_is_minted_for_the_callers_session_and_expires_in_minutes(
    alice: httpx.AsyncClient,
) -> None:
    sid = await create_sid(alice)

    response = await alice.post(sessions_url(sid, "/streamTokens"))

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"token", "expiresAt"}
    expires = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    left = (expires - datetime.now(UTC)).total_seconds()
    assert 290 < left <= 300
    assert _claims(body["token"])[:2] == ["alice", sid]


async def test_another_principal_cannot_mint_a_token_for_my_session(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    sid = await create_sid(alice)

    response = await bob.post(sessions_url(sid, "/streamTokens"))

    assert_error(response, 404, "not_found")


async def test_minting_needs_the_key_in_the_header(
    alice: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    sid = await create_sid(alice)

    response = await anonymous.post(sessions_url(sid, "/streamTokens"))

    assert_error(response, 401, "unauthorized")


# --- streaming with a token ---------------------------------------------------------------------


async def test_a_token_streams_the_reply_in_flight_without_a_key(
    alice: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    sid = await create_sid(alice, agentId="echo", refreshIntervalMs=50)
    text = words(40)
    await start_reply(alice, sid, text)
    token = await mint(alice, sid)

    response, events = await stream_events(
        anonymous, "GET", sessions_url(sid, f"/stream?token={token}")
    )

    assert response.status_code == 200
    assert events[-1].event == "done"
    assert delta_text(events) == expected_reply("echo", text)


async def test_a_token_can_be_used_again_until_it_expires(
    alice: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    """EventSource reconnects to the same URL by itself."""
    sid = await create_sid(alice)
    token = await mint(alice, sid)

    first = await join(anonymous, sid, token=token)
    second = await join(anonymous, sid, token=token)

    assert first.status_code == second.status_code == 204


async def test_a_stream_with_a_token_takes_one_request_from_the_principals_limit(
    alice: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    sid = await create_sid(alice)
    minted = await alice.post(sessions_url(sid, "/streamTokens"))
    before = int(minted.headers["ratelimit-remaining"])

    joined = await join(anonymous, sid, token=minted.json()["token"])

    assert joined.status_code == 204
    assert int(joined.headers["ratelimit-remaining"]) == before - 1


async def test_a_token_for_another_session_is_refused(
    alice: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    mine, other = await create_sid(alice), await create_sid(alice)
    token = await mint(alice, mine)

    response = await join(anonymous, other, token=token)

    error = assert_error(response, 403, "forbidden")
    assert "another session" in error["message"]


async def test_a_token_cannot_open_another_principals_session(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    alices = await create_sid(alice)
    bobs_token = await mint(bob, await create_sid(bob))
    _, signature = bobs_token.split(".")
    claims = _claims(bobs_token)
    claims[1] = alices
    forged = f"{_b64(json.dumps(claims).encode())}.{signature}"

    response = await join(anonymous, alices, token=forged)

    assert_error(response, 401, "unauthorized")


def _tamper(token: str, how: str) -> str:
    body, signature = token.split(".")
    if how == "principal":
        claims = _claims(token)
        claims[0] = "bob"
        return f"{_b64(json.dumps(claims).encode())}.{signature}"
    if how == "expiry":
        claims = _claims(token)
        claims[2] += 3_600_000
        return f"{_b64(json.dumps(claims).encode())}.{signature}"
    if how == "signature":
        flipped = "A" if signature[0] != "A" else "B"
        return f"{body}.{flipped}{signature[1:]}"
    if how == "unsigned":
        return body
    return token + "x"


@pytest.mark.parametrize("how", ["principal", "expiry", "signature", "unsigned", "appended"])
async def test_a_tampered_token_is_refused(
    alice: httpx.AsyncClient, anonymous: httpx.AsyncClient, how: str
) -> None:
    sid = await create_sid(alice)
    token = await mint(alice, sid)

    response = await join(anonymous, sid, token=_tamper(token, how))

    error = assert_error(response, 401, "unauthorized")
    assert "not valid" in error["message"]


async def test_an_expired_token_is_refused(server_factory: ServerFactory) -> None:
    server = server_factory({**KEYS, "PARLEY_STREAM_TOKEN_TTL_SECONDS": "1"})
    async with server.client(headers={"Authorization": f"Bearer {ALICE}"}) as alice:
        sid = await create_sid(alice)
        token = await mint(alice, sid)
        await asyncio.sleep(1.2)
    async with server.client() as anonymous:
        response = await join(anonymous, sid, token=token)

    error = assert_error(response, 401, "unauthorized")
    assert "expired" in error["message"] and "streamTokens" in error["message"]


# --- keys in URLs -------------------------------------------------------------------------------


async def test_an_access_token_in_the_query_is_refused_with_what_to_do_instead(
    alice: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    sid = await create_sid(alice)

    response = await join(anonymous, sid, access_token=ALICE)

    error = assert_error(response, 401, "unauthorized")
    assert error["message"] == KEY_IN_URL


async def test_a_key_passed_as_the_token_is_refused_the_same_way(
    alice: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    sid = await create_sid(alice)

    response = await join(anonymous, sid, token=ALICE)

    assert assert_error(response, 401, "unauthorized")["message"] == KEY_IN_URL


async def test_a_key_in_the_query_is_refused_even_beside_a_valid_header(
    alice: httpx.AsyncClient,
) -> None:
    response = await alice.get("/v1/sessions", params={"access_token": ALICE})

    assert assert_error(response, 401, "unauthorized")["message"] == KEY_IN_URL


async def test_the_access_log_never_shows_a_token(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(KEYS, extra_args=["--log-level", "info"])
    async with server.client(headers={"Authorization": f"Bearer {ALICE}"}) as alice:
        sid = await create_sid(alice)
        token = await mint(alice, sid)
        assert (await join(alice, sid, token=token)).status_code == 204
        await join(alice, sid, access_token=ALICE)
    server.terminate()

    log = server.stdout_text() + server.stderr_text()
    assert "/stream?token=[redacted]" in log, log
    assert token not in log and ALICE not in log


# --- authentication off -------------------------------------------------------------------------


async def test_without_keys_a_stream_needs_no_token(client: httpx.AsyncClient) -> None:
    sid = await create_sid(client)

    response = await join(client, sid)

    assert response.status_code == 204


async def test_without_keys_a_token_works_too(client: httpx.AsyncClient) -> None:
    sid = await create_sid(client)
    token = await mint(client, sid)

    response = await join(client, sid, token=token)

    assert response.status_code == 204
    assert _claims(token)[:2] == ["anonymous", sid]


async def test_a_token_minted_without_keys_is_refused_once_keys_are_set(
    server_factory: ServerFactory,
) -> None:
    secret = {"PARLEY_STREAM_TOKEN_SECRET": "s" * 32}
    open_server = server_factory(secret)
    async with open_server.client() as client:
        sid = await create_sid(client)
        token = await mint(client, sid)
    keyed = server_factory({**secret, **KEYS})
    async with keyed.client() as anonymous:
        response = await join(anonymous, sid, token=token)

    assert_error(response, 401, "unauthorized")
