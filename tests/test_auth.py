"""API keys and principals; with no keys, loopback only."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.native import (
    assert_error,
    blocking_continue,
    continue_body,
    create_session,
    json_log,
    own_server,
    parley_serve,
    snapshot,
)
from tests.support.servers import ServerFactory, ServerProcess

ALICE, BOB, BARE = "alice-secret-key", "bob-secret-key", "bare-secret-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServerProcess]:
    env = {"PARLEY_API_KEYS": f"{ALICE}=alice, {BOB}=bob, {BARE}"}
    with own_server(tmp_path_factory.mktemp("auth-server"), redis_url, env) as started:
        yield started


def _as(server: ServerProcess, key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return server.client(headers=headers)


@pytest.fixture
async def alice(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with _as(server, ALICE) as client:
        yield client


@pytest.fixture
async def bob(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with _as(server, BOB) as client:
        yield client


@pytest.fixture
async def alices_sid(alice: httpx.AsyncClient) -> str:
    session = await create_session(alice, agentId="echo", title="alice's diary")
    await blocking_continue(alice, session["conversationId"], "my secret plans")
    return str(session["conversationId"])


ENDPOINTS = [
    ("GET", ""),
    ("PATCH", ""),
    ("DELETE", ""),
    ("GET", "/exchanges"),
    ("POST", "/blockingContinue"),
    ("POST", "/streamingContinue"),
    ("POST", "/cancel"),
    ("GET", "/stream"),
]


def _body(method: str, suffix: str) -> dict[str, object] | None:
    if suffix.endswith("Continue"):
        return continue_body("let me in")
    if method == "PATCH":
        return {"title": "taken over"}
    return {} if method == "POST" else None


@pytest.mark.parametrize("key", [None, "not-a-key", ALICE + "x", ALICE[:-1]])
async def test_a_missing_or_wrong_key_gets_401(server: ServerProcess, key: str | None) -> None:
    async with _as(server, key) as client:
        listed = await client.get("/v1/sessions")
        created = await client.post("/v1/sessions", json={})

    for response in (listed, created):
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


async def test_a_key_in_another_scheme_gets_401(server: ServerProcess) -> None:
    async with server.client(headers={"Authorization": f"Basic {ALICE}"}) as client:
        response = await client.get("/v1/sessions")

    assert_error(response, 401, "unauthorized")


async def test_a_wrong_key_changes_nothing(server: ServerProcess, alices_sid: str) -> None:
    before = await snapshot(server.redis_url, server.key_prefix)
    async with _as(server, "guess") as client:
        for method, suffix in ENDPOINTS:
            url = f"/v1/sessions/{alices_sid}{suffix}"
            response = await client.request(method, url, json=_body(method, suffix))
            assert_error(response, 401)

    assert await snapshot(server.redis_url, server.key_prefix) == before


async def test_probes_need_no_key(server: ServerProcess) -> None:
    async with _as(server, None) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200


async def test_a_bare_key_is_accepted_as_a_principal_of_its_own(server: ServerProcess) -> None:
    async with _as(server, BARE) as client:
        session = await create_session(client)
        listed = (await client.get("/v1/sessions")).json()["data"]

    assert [s["conversationId"] for s in listed] == [session["conversationId"]]


@pytest.mark.parametrize(("method", "suffix"), ENDPOINTS, ids=lambda v: v or "session")
async def test_another_principal_gets_404_and_changes_nothing(
    server: ServerProcess, bob: httpx.AsyncClient, alices_sid: str, method: str, suffix: str
) -> None:
    before = await snapshot(server.redis_url, server.key_prefix)

    url = f"/v1/sessions/{alices_sid}{suffix}"
    response = await bob.request(method, url, json=_body(method, suffix))

    assert_error(response, 404, "not_found")
    assert await snapshot(server.redis_url, server.key_prefix) == before


async def test_another_principals_sessions_are_absent_from_lists(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, alices_sid: str
) -> None:
    bobs = (await create_session(bob, title="alice's diary too"))["conversationId"]

    seen_by_bob = (await bob.get("/v1/sessions", params={"limit": 100})).json()["data"]
    searched_by_bob = (await bob.get("/v1/sessions", params={"q": "alice"})).json()["data"]
    seen_by_alice = (await alice.get("/v1/sessions", params={"limit": 100})).json()["data"]

    assert alices_sid not in {s["conversationId"] for s in seen_by_bob}
    assert [s["conversationId"] for s in searched_by_bob] == [bobs]
    assert alices_sid in {s["conversationId"] for s in seen_by_alice}
    assert bobs not in {s["conversationId"] for s in seen_by_alice}


async def test_batch_delete_by_another_principal_finds_nothing(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, alices_sid: str
) -> None:
    response = await bob.post("/v1/sessions/batchDelete", json={"conversationIds": [alices_sid]})

    assert response.json() == {"deleted": [], "notFound": [alices_sid]}
    assert (await alice.get(f"/v1/sessions/{alices_sid}")).status_code == 200


async def test_auto_create_cannot_take_over_another_principals_session(
    server: ServerProcess, alice: httpx.AsyncClient, bob: httpx.AsyncClient, alices_sid: str
) -> None:
    before = await snapshot(server.redis_url, server.key_prefix)

    response = await bob.get(f"/v1/sessions/{alices_sid}", params={"autoCreate": "true"})

    assert_error(response, 404, "not_found")
    assert await snapshot(server.redis_url, server.key_prefix) == before
    assert (await alice.get(f"/v1/sessions/{alices_sid}")).json()["title"] == "alice's diary"


# --- authentication off -----------------------------------------------------------------------


def _non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than loopback, if it has one."""
    candidates: set[str] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            candidates.add(str(info[4][0]))
    except OSError:
        pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))
            candidates.add(probe.getsockname()[0])
    except OSError:
        pass
    usable = sorted(a for a in candidates if not a.startswith("127.") and a != "0.0.0.0")
    return usable[0] if usable else None


def _serve_env(redis_url: str, key_prefix: str, **extra: str) -> dict[str, str | None]:
    return {"PARLEY_REDIS_URL": redis_url, "PARLEY_KEY_PREFIX": key_prefix, **extra}


def test_parley_serve_refuses_a_non_loopback_bind_without_keys(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    server = parley_serve(tmp_path, ["--host", "0.0.0.0"], _serve_env(redis_url, key_prefix))

    code = server.proc.wait(20)

    assert code != 0
    message = server.stderr_text()
    assert "refusing to listen on 0.0.0.0" in message
    assert "PARLEY_API_KEYS" in message and "PARLEY_ALLOW_INSECURE" in message


async def test_parley_serve_binds_beyond_loopback_with_allow_insecure(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    env = _serve_env(redis_url, key_prefix, PARLEY_ALLOW_INSECURE="1")
    server = parley_serve(tmp_path, ["--host", "0.0.0.0"], env)
    try:
        server.wait_ready(20)
        address = _non_loopback_address()
        base = f"http://{address}:{server.port}" if address else server.base_url
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            created = await client.post("/v1/sessions", json={})
    finally:
        server.terminate()

    assert created.status_code == 201
    assert any("authentication is off" in entry.get("msg", "") for entry in json_log(server))


async def test_parley_serve_logs_that_authentication_is_off(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    server = parley_serve(tmp_path, [], _serve_env(redis_url, key_prefix))
    try:
        server.wait_ready(20)
    finally:
        server.terminate()

    assert any("authentication is off" in entry.get("msg", "") for entry in json_log(server))


async def test_without_keys_requests_reaching_a_non_loopback_address_are_refused(
    server_factory: ServerFactory,
) -> None:
    """uvicorn started directly (as the Procfile does) skips the CLI's bind check."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    server = server_factory(extra_args=["--host", "0.0.0.0"])

    async with httpx.AsyncClient(base_url=f"http://{address}:{server.port}") as remote:
        refused = await remote.post("/v1/sessions", json={})
    async with server.client() as local:
        accepted = await local.post("/v1/sessions", json={})

    error = assert_error(refused, 403, "forbidden")
    assert "loopback" in error["message"]
    assert accepted.status_code == 201
