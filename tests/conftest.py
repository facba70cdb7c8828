"""Shared fixtures: one private Redis for the session, real uvicorn servers, unique key prefixes.

- `redis_server` / `redis_url`: the session's Redis (free port, never 6379, no persistence).
- `key_prefix`: a fresh PARLEY_KEY_PREFIX per test, so tests never see each other's keys.
- `redis_client`: async redis-py client (str responses) on the session's Redis.
- `redis_factory`: private Redis processes for tests that stop/restart/kill one.
- `shared_server` / `client`: one app process with default settings for the whole session.
- `server_factory`: app processes of a test's own (env overrides, workers), stopped at teardown.
- `upstream` / `parley` / `http`: per module, the fake OpenAI/Anthropic upstream and an app
  process wired to it (tests/support/agents.py); `http` is a client on that app, per test, with
  the upstream reset to its default reply first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from server.embedded_redis import RedisProcess
from tests.support.agents import start_upstream_server
from tests.support.servers import ServerFactory, ServerProcess, new_key_prefix, start_server
from tests.support.upstream import UpstreamServer

RedisFactory = Callable[..., RedisProcess]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    with RedisProcess(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisProcess) -> str:
    return redis_server.url


@pytest.fixture
def key_prefix() -> str:
    return new_key_prefix()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[RedisFactory]:
    """`redis_factory(appendonly=False, port=None)` -> a started private RedisProcess."""
    started: list[RedisProcess] = []

    def start(*, appendonly: bool = False, port: int | None = None) -> RedisProcess:
        server = RedisProcess(tmp_path / f"redis-{len(started)}", appendonly=appendonly, port=port)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def shared_server(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[ServerProcess]:
    server = start_server(
        tmp_path_factory.mktemp("shared-server"),
        redis_url=redis_url,
        key_prefix=new_key_prefix("s"),
    )
    yield server
    server.terminate()


@pytest.fixture
async def client(shared_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with shared_server.client() as http:
        yield http


@pytest.fixture
def server_factory(tmp_path: Path, redis_url: str, key_prefix: str) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path / "servers", redis_url=redis_url, key_prefix=key_prefix)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@pytest.fixture(scope="module")
def parley(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    upstream: UpstreamServer,
) -> Iterator[ServerProcess]:
    name = request.module.__name__.rpartition(".")[2].removeprefix("test_")
    server = start_upstream_server(tmp_path_factory.mktemp(name), redis_url, upstream)
    yield server
    server.terminate()


@pytest.fixture
async def http(parley: ServerProcess, upstream: UpstreamServer) -> AsyncIterator[httpx.AsyncClient]:
    upstream.reset()
    async with parley.client() as client:
        yield client
