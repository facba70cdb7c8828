"""Run a baseline (bare or naive-redis) under real uvicorn in a subprocess on a free port."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import msgspec

from server.bench import baseline, naive_redis
from server.bench.baseline import BaselineProfile
from server.bench.http1 import Http1Connection, HttpError
from server.bench.naive_redis import NaiveRedisProfile

_REPO_ROOT = Path(__file__).resolve().parents[2]
_STARTUP_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0


class BaselineServer(msgspec.Struct, frozen=True):
    host: str
    port: int
    pid: int


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _app(profile: BaselineProfile | NaiveRedisProfile) -> tuple[str, str]:
    """The app factory to run for this profile, and the variable that carries the profile."""
    if isinstance(profile, NaiveRedisProfile):
        return "server.bench.naive_redis:create_naive_redis_app", naive_redis.PROFILE_ENV
    return "server.bench.baseline:create_baseline_app", baseline.PROFILE_ENV


def _command(factory: str, host: str, port: int, workers: int) -> list[str]:
    return [
        *("-m", "uvicorn", factory),
        *("--factory", "--host", host, "--port", str(port), "--workers", str(workers)),
        *("--loop", "uvloop", "--http", "httptools", "--no-access-log"),
        *("--log-level", "warning", "--backlog", "4096", "--timeout-graceful-shutdown", "2"),
    ]


def _environment(name: str, profile: BaselineProfile | NaiveRedisProfile) -> dict[str, str]:
    env = dict(os.environ)
    env[name] = msgspec.json.encode(profile).decode()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@asynccontextmanager
async def serve_baseline(
    profile: BaselineProfile | NaiveRedisProfile, *, workers: int = 1, host: str = "127.0.0.1"
) -> AsyncIterator[BaselineServer]:
    """Start the baseline the profile is for, wait until a worker answers, stop it on exit."""
    port = free_port(host)
    factory, variable = _app(profile)
    with tempfile.TemporaryFile() as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *_command(factory, host, port, workers),
            env=_environment(variable, profile),
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await _wait_ready(process, host, port, log)
            yield BaselineServer(host=host, port=port, pid=process.pid)
        finally:
            await _stop(process)


async def _wait_ready(
    process: asyncio.subprocess.Process, host: str, port: int, log: IO[bytes]
) -> None:
    """Wait for a worker to answer ``/healthz`` (the socket alone may be the master's)."""
    head = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    deadline = asyncio.get_running_loop().time() + _STARTUP_TIMEOUT_S
    while asyncio.get_running_loop().time() < deadline:
        if process.returncode is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise RuntimeError(f"baseline server exited with {process.returncode}:\n{output}")
        connection = Http1Connection(host, port)
        try:
            if (await connection.request(head, timeout=2.0)).status == 200:
                return
        except HttpError:
            await asyncio.sleep(0.05)
        finally:
            connection.close()
    raise RuntimeError(f"baseline server did not answer on {host}:{port} within 30 s")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), _STOP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
