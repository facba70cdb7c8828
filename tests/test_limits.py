"""Rate limits, concurrency caps and usage quotas per key, enforced in Redis for every worker.

Each test starts Parley with a keys file of its own; the limits are the file's per-key values.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.support.native import (
    assert_error,
    blocking_continue,
    create_sid,
    get_session,
    record,
    sessions_url,
    stream_reply,
    streaming,
    words,
)
from tests.support.servers import ServerFactory, ServerProcess

USER, ADMIN = "sk-user", "sk-admin"


def keys_file(tmp_path: Path, **limits: Any) -> str:
    """A user key of principal ``acme`` with ``limits`` (camelCase), and an admin key."""
    lines = [f'[[keys]]\nkey = "{USER}"\nprincipal = "acme"']
    lines += [f"{name} = {value}" for name, value in limits.items()]
    lines += [f'\n[[keys]]\nkey = "{ADMIN}"\nprincipal = "ops"\nrole = "admin"\n']
    path = tmp_path / "keys.toml"
    path.write_text("\n".join(lines))
    return str(path)


def limited(
    server_factory: ServerFactory, tmp_path: Path, *, workers: int | None = None, **limits: Any
) -> ServerProcess:
    return server_factory({"PARLEY_KEYS_FILE": keys_file(tmp_path, **limits)}, workers=workers)


def as_key(server: ServerProcess, key: str = USER) -> httpx.AsyncClient:
    return server.client(headers={"Authorization": f"Bearer {key}"})


# --- request rate -----------------------------------------------------------------------------


async def test_a_request_past_the_burst_is_refused_with_429_and_retry_after(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = limited(server_factory, tmp_path, requestsPerSecond=0.5, burst=2)
    async with as_key(server) as http:
        first = await http.get("/v1/sessions")
        second = await http.get("/v1/sessions")
        refused = await http.get("/v1/sessions")

    assert (first.status_code, second.status_code) == (200, 200)
    error = assert_error(refused, 429, "rate_limited")
    assert "0.5 requests per second" in error["message"]
    assert refused.headers["retry-after"] == "2"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert first.headers["ratelimit-remaining"] == "1"


async def test_every_answer_carries_the_rate_limit_headers(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = limited(server_factory, tmp_path, requestsPerSecond=10, burst=20)
    async with as_key(server) as http:
        listed = await http.get("/v1/sessions")
        missing = await http.get(sessions_url("0" * 32))
        invalid = await http.post("/v1/sessions", json={"agentId": 7})

    for answer in (listed, missing, invalid):
        assert answer.headers["ratelimit-limit"] == "20", answer.status_code
        assert int(answer.headers["ratelimit-remaining"]) < 20
        assert int(answer.headers["ratelimit-reset"]) >= 1
    assert [a.status_code for a in (listed, missing, invalid)] == [200, 404, 400]


async def test_keys_of_other_principals_have_buckets_of_their_own(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = limited(server_factory, tmp_path, requestsPerSecond=0.1, burst=1)
    async with as_key(server) as user, as_key(server, ADMIN) as admin:
        assert (await user.get("/v1/sessions")).status_code == 200
        assert (await user.get("/v1/sessions")).status_code == 429
        answer = await admin.get("/v1/sessions")

    assert answer.status_code == 200
    assert "ratelimit-limit" not in answer.headers


@pytest.mark.slow
async def test_two_workers_enforce_one_rate_limit_within_one_request(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    rate, burst, seconds = 5, 5, 3.0
    server = limited(server_factory, tmp_path, workers=2, requestsPerSecond=rate, burst=burst)
    answers: list[tuple[float, float, int]] = []  # (sent at, answered at, status)

    async def hammer(deadline: float) -> None:
        # A client of its own per task: its connection lands on either worker.
        async with as_key(server) as http:
            while (sent := time.monotonic()) < deadline:
                status = (await http.get("/v1/agents")).status_code
                answers.append((sent, time.monotonic(), status))
                await asyncio.sleep(0.01)

    deadline = time.monotonic() + seconds
    await asyncio.gather(*(hammer(deadline) for _ in range(8)))

    # Redis saw the requests between the first send and the last answer at the most, and
    # between the first answer and the last send at the least: the bucket allows its burst
    # plus the refill over that time, within one request.
    sent, answered = [a[0] for a in answers], [a[1] for a in answers]
    allowed = sum(status == 200 for *_, status in answers)
    least = burst + rate * (max(sent) - min(answered))
    most = burst + rate * (max(answered) - min(sent))
    record("two_workers_rate_limit", allowed=allowed, expected=f"{least:.2f}-{most:.2f}")
    assert least - 1 <= allowed <= most + 1, (allowed, least, most)
    assert all(status in (200, 429) for *_, status in answers)


# --- concurrent exchanges ---------------------------------------------------------------------


async def test_the_exchange_past_the_concurrency_cap_is_refused_until_one_ends(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = limited(server_factory, tmp_path, maxConcurrentExchanges=1)
    async with as_key(server) as http:
        busy_sid, other_sid = await create_sid(http, agentId="echo"), await create_sid(http)
        async with streaming(http, busy_sid, words(40)) as flight:
            refused = await http.post(
                sessions_url(other_sid, "/blockingContinue"), json={"userInput": {"text": "hi"}}
            )
            await flight.rest()
        allowed = await http.post(
            sessions_url(other_sid, "/blockingContinue"),
            json={"userInput": {"text": "hi"}},
        )
        other = await get_session(http, other_sid)

    error = assert_error(refused, 429, "concurrency_limited")
    assert "1 exchanges are already running" in error["message"]
    assert refused.headers["retry-after"] == "1"
    assert allowed.status_code == 200, allowed.text
    assert other["messageCount"] == 1


async def test_a_continue_on_a_busy_session_does_not_count_against_the_cap(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = limited(server_factory, tmp_path, maxConcurrentExchanges=2, exchangeQuota=2)
    async with as_key(server) as http:
        sid = await create_sid(http, agentId="echo")
        async with streaming(http, sid, words(20)) as flight:
            busy = await http.post(
                sessions_url(sid, "/blockingContinue"), json={"userInput": {"text": "hi"}}
            )
            await flight.rest()
        second = await blocking_continue(http, sid, "again")

    assert_error(busy, 409)
    assert second["status"] == "completed"


# --- quotas -----------------------------------------------------------------------------------


async def test_a_token_quota_spent_mid_reply_lets_that_reply_finish_and_refuses_the_next(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = limited(server_factory, tmp_path, tokenQuota=30)
    async with as_key(server) as http:
        sid = await create_sid(http, agentId="echo")
        reply = await stream_reply(http, sid, words(40))
        before = await get_session(http, sid)
        refused = await http.post(
            sessions_url(sid, "/blockingContinue"), json={"userInput": {"text": "more"}}
        )
        after = await get_session(http, sid)

    assert reply.text == words(40)
    assert before["usage"]["totalTokens"] > 30
    error = assert_error(refused, 429, "quota_exceeded")
    assert error["message"].startswith("the token quota of 30 is used up")
    assert "retry-after" not in refused.headers  # a quota for good does not come back
    assert after == before


async def test_an_exchange_quota_comes_back_with_its_window(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = limited(server_factory, tmp_path, exchangeQuota=1, quotaWindowSeconds=2)
    async with as_key(server) as http:
        sid = await create_sid(http, agentId="echo")
        await blocking_continue(http, sid, "one")
        refused = await http.post(
            sessions_url(sid, "/blockingContinue"), json={"userInput": {"text": "two"}}
        )
        await asyncio.sleep(int(refused.headers["retry-after"]))
        later = await blocking_continue(http, sid, "three")

    assert_error(refused, 429, "quota_exceeded")
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    assert later["status"] == "completed"


async def test_a_refused_continue_leaves_no_trace_in_redis(
    server_factory: ServerFactory, tmp_path: Path, redis_client: Redis
) -> None:
    server = limited(server_factory, tmp_path, exchangeQuota=1)
    async with as_key(server) as http:
        sid = await create_sid(http, agentId="echo")
        await blocking_continue(http, sid, "one")
        pattern = f"{server.key_prefix}:{{{sid}}}:*"
        before = {key: await redis_client.dump(key) for key in await _keys(redis_client, pattern)}
        refused = await http.post(
            sessions_url(sid, "/streamingContinue"), json={"userInput": {"text": "two"}}
        )
        after = {key: await redis_client.dump(key) for key in await _keys(redis_client, pattern)}

    assert_error(refused, 429, "quota_exceeded")
    assert after == before


async def _keys(redis: Redis, pattern: str) -> list[bytes]:
    return sorted([key async for key in redis.scan_iter(match=pattern)])


# --- usage for admins -------------------------------------------------------------------------


async def test_an_admin_reads_a_principals_usage_and_limits(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = limited(server_factory, tmp_path, tokenQuota=10_000, maxConcurrentExchanges=3)
    async with as_key(server) as http, as_key(server, ADMIN) as admin:
        sid = await create_sid(http, agentId="echo")
        first = await blocking_continue(http, sid, "one two three")
        second = await blocking_continue(http, sid, "four five")
        usage = await admin.get("/v1/keys/acme/usage")

    assert usage.status_code == 200, usage.text
    assert usage.json() == {
        "principal": "acme",
        "runningExchanges": 0,
        "exchanges": 2,
        "tokens": first["usage"]["totalTokens"] + second["usage"]["totalTokens"],
        "windowStartedAt": None,
        "windowEndsAt": None,
        "limits": {
            "requestsPerSecond": 0.0,
            "burst": 0,
            "maxConcurrentExchanges": 3,
            "tokenQuota": 10_000,
            "exchangeQuota": 0,
            "quotaWindowSeconds": 0,
        },
    }


async def test_usage_is_for_admin_keys_only(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = limited(server_factory, tmp_path)
    async with as_key(server) as http, as_key(server, ADMIN) as admin:
        forbidden = await http.get("/v1/keys/acme/usage")
        unknown = await admin.get("/v1/keys/nobody/usage")

    assert "admin key" in assert_error(forbidden, 403, "forbidden")["message"]
    assert_error(unknown, 404)


async def test_refusals_and_each_principals_tokens_are_counted_in_metrics(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = limited(server_factory, tmp_path, exchangeQuota=1)
    async with as_key(server) as http:
        sid = await create_sid(http, agentId="echo")
        exchange = await blocking_continue(http, sid, "one two")
        await http.post(sessions_url(sid, "/blockingContinue"), json={"userInput": {"text": "x"}})
        text = (await http.get("/metrics")).text

    assert 'parley_refusals_total{reason="quota_exceeded"} 1.0' in text
    assert 'parley_principal_exchanges_total{principal="acme"} 1.0' in text
    tokens = float(exchange["usage"]["totalTokens"])
    assert f'parley_principal_tokens_total{{principal="acme"}} {tokens}' in text


# --- every surface, in its own words ----------------------------------------------------------

SURFACE_PATHS = {
    "native": "/v1/sessions",
    "palantir": "/api/v2/aipAgents/agents/ri.aip-agents..agent.echo/sessions",
    "agno": "/sessions",
    "openviking": "/api/v1/sessions",
    "qoder": "/anthropic/v1/agents",
}


@pytest.fixture
async def refusals(server_factory: ServerFactory, tmp_path: Path) -> dict[str, httpx.Response]:
    """Each surface's answer to the second request of a key whose bucket holds one."""
    server = limited(server_factory, tmp_path, requestsPerSecond=0.01, burst=1)
    answers = {}
    for surface, path in SURFACE_PATHS.items():
        async with as_key(server) as http:
            await empty_bucket_of_acme(server)
            assert (await http.get(path)).status_code == 200, surface
            answers[surface] = await http.get(path)
    return answers


async def empty_bucket_of_acme(server: ServerProcess) -> None:
    """Forget the bucket, so the next request finds it full (one token) again."""
    async with Redis.from_url(server.redis_url) as redis:
        await redis.delete(f"{server.key_prefix}:{{lim:acme}}:bucket")


def assert_refused(answer: httpx.Response) -> Any:
    assert answer.status_code == 429, answer.text
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.headers["ratelimit-remaining"] == "0"
    return answer.json()


async def test_native_refuses_with_its_error_envelope(refusals: dict[str, httpx.Response]) -> None:
    body = assert_refused(refusals["native"])

    assert body["error"]["code"] == "rate_limited"


async def test_palantir_refuses_with_rate_limit_exceeded(
    refusals: dict[str, httpx.Response],
) -> None:
    body = assert_refused(refusals["palantir"])

    assert (body["errorCode"], body["errorName"]) == ("TOO_MANY_REQUESTS", "RateLimitExceeded")
    assert "requests per second" in body["parameters"]["details"]


async def test_agno_refuses_with_a_detail(refusals: dict[str, httpx.Response]) -> None:
    body = assert_refused(refusals["agno"])

    assert list(body) == ["detail"] and "requests per second" in body["detail"]


async def test_openviking_refuses_with_resource_exhausted(
    refusals: dict[str, httpx.Response],
) -> None:
    body = assert_refused(refusals["openviking"])

    assert (body["status"], body["error"]["code"]) == ("error", "RESOURCE_EXHAUSTED")


async def test_qoder_and_the_anthropic_mount_refuse_with_rate_limit_error(
    refusals: dict[str, httpx.Response],
) -> None:
    body = assert_refused(refusals["qoder"])

    assert (body["type"], body["error"]["type"]) == ("error", "rate_limit_error")
    assert refusals["qoder"].headers["request-id"] == body["request_id"]


# --- Redis away -------------------------------------------------------------------------------


async def test_with_redis_away_a_limited_key_is_refused_with_503_not_let_through(
    redis_factory: Any, server_factory: ServerFactory, tmp_path: Path
) -> None:
    redis = redis_factory()
    path = keys_file(tmp_path, requestsPerSecond=100, burst=100)
    server = server_factory({"PARLEY_KEYS_FILE": path}, redis_url=redis.url)
    async with as_key(server) as http:
        assert (await http.get("/v1/agents")).status_code == 200
        redis.stop()
        refused = await http.get("/v1/agents")

    error = assert_error(refused, 503, "unavailable")
    assert "Redis" in error["message"]
    assert refused.headers["retry-after"]
