"""Real uvicorn processes serving the Parley app on free ports, one per test or per session.

Streaming is only honest over a real socket: in-process ASGI test clients buffer whole
responses, so every HTTP test talks to one of these.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from server.embedded_redis import exit_with_parent, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = "server.app:create_app"
_PORT_ATTEMPTS = 3


class ServerStartError(RuntimeError):
    """The app did not answer /healthz; the message carries its stderr."""


class ServerProcess:
    """One `python -m uvicorn server.app:create_app --factory` process and its log files."""

    def __init__(
        self, proc: subprocess.Popen[bytes], port: int, log_dir: Path, env: Mapping[str, str]
    ) -> None:
        self.proc = proc
        self.port = port
        self.log_dir = log_dir
        self.env = dict(env)
        self.base_url = f"http://127.0.0.1:{port}"

    @property
    def key_prefix(self) -> str:
        return self.env["PARLEY_KEY_PREFIX"]

    @property
    def redis_url(self) -> str:
        return self.env["PARLEY_REDIS_URL"]

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An async client for this server; use it as `async with server.client() as client:`."""
        kwargs.setdefault("timeout", httpx.Timeout(30.0, connect=5.0))
        return httpx.AsyncClient(base_url=self.base_url, **kwargs)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stdout_text(self) -> str:
        return _read(self.log_dir / "stdout.log")

    def stderr_text(self) -> str:
        return _read(self.log_dir / "stderr.log")

    def send_signal(self, sig: signal.Signals) -> None:
        if self.running:
            self.proc.send_signal(sig)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for a graceful exit; SIGKILL (and fail) if it hangs past `timeout`."""
        self.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"uvicorn pid {self.pid} ignored SIGTERM for {timeout:g}s\n{self.stderr_text()}"
            ) from None

    def kill(self) -> None:
        if self.running:
            self.proc.kill()
        self.proc.wait()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=1.0) as client:
            while time.monotonic() < deadline:
                if not self.running:
                    raise ServerStartError(self._failure(f"exited with {self.proc.returncode}"))
                try:
                    if client.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.kill()
        raise ServerStartError(self._failure(f"no 200 from /healthz within {timeout:g}s"))

    def _failure(self, what: str) -> str:
        return f"uvicorn on port {self.port} {what}; stderr:\n{self.stderr_text()}"


def child_env(overrides: Mapping[str, str | None] | None = None, **settings: str) -> dict[str, str]:
    """A child's environment: ours without any PARLEY_* leaking in, ``settings``, then the
    test's ``overrides``.

    An override of None removes that variable.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(settings)
    for name, value in (overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def server_env(
    redis_url: str, key_prefix: str, overrides: Mapping[str, str | None] | None = None
) -> dict[str, str]:
    """The app's environment: see ``child_env``."""
    return child_env(
        overrides,
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        PARLEY_REDIS_URL=redis_url,
        PARLEY_KEY_PREFIX=key_prefix,
    )


def spawn(
    command: Sequence[str], log_dir: Path, env: Mapping[str, str], cwd: Path = REPO_ROOT
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own, its output in ``log_dir``/std{out,err}.log.

    The child dies with this process (``exit_with_parent``).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "stdout.log").open("wb") as out, (log_dir / "stderr.log").open("wb") as err:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=exit_with_parent,
        )


def uvicorn_command(
    port: int,
    *,
    app: str = APP,
    workers: int | None = None,
    graceful_timeout: float = 5.0,
    extra_args: Sequence[str] = (),
) -> list[str]:
    command = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning"]
    command += ["--timeout-graceful-shutdown", f"{graceful_timeout:g}"]
    if workers is not None:
        command += ["--workers", str(workers)]
    return [*command, *extra_args]


def start_server(
    log_dir: Path,
    *,
    redis_url: str,
    key_prefix: str,
    env: Mapping[str, str | None] | None = None,
    workers: int | None = None,
    graceful_timeout: float = 5.0,
    app: str = APP,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 15.0,
    cwd: Path = REPO_ROOT,
) -> ServerProcess:
    """Start uvicorn on a free port and return once GET /healthz answers 200.

    Retries on a fresh port if another process grabbed the chosen one in the meantime.
    """
    for attempt in range(_PORT_ATTEMPTS):
        port = free_port()
        attempt_dir = log_dir / f"uvicorn-{port}"
        command = uvicorn_command(
            port,
            app=app,
            workers=workers,
            graceful_timeout=graceful_timeout,
            extra_args=extra_args,
        )
        environ = server_env(redis_url, key_prefix, env)
        proc = spawn(command, attempt_dir, environ, cwd)
        server = ServerProcess(proc, port, attempt_dir, environ)
        try:
            server.wait_ready(ready_timeout)
            return server
        except ServerStartError:
            lost_race = "address already in use" in server.stderr_text().lower()
            if not lost_race or attempt + 1 == _PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


class ServerFactory:
    """Starts servers for one test with its Redis and key prefix; stops every one at teardown."""

    def __init__(self, log_dir: Path, *, redis_url: str, key_prefix: str) -> None:
        self.log_dir = log_dir
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.started: list[ServerProcess] = []

    def __call__(
        self,
        env: Mapping[str, str | None] | None = None,
        *,
        workers: int | None = None,
        graceful_timeout: float = 5.0,
        redis_url: str | None = None,
        key_prefix: str | None = None,
        **kwargs: Any,
    ) -> ServerProcess:
        server = start_server(
            self.log_dir,
            redis_url=redis_url or self.redis_url,
            key_prefix=key_prefix or self.key_prefix,
            env=env,
            workers=workers,
            graceful_timeout=graceful_timeout,
            **kwargs,
        )
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in reversed(self.started):
            server.terminate()


def new_key_prefix(kind: str = "t") -> str:
    """A Redis key prefix no other test or session uses, e.g. `t3f9c0a1b2c4d`."""
    return f"{kind}{uuid.uuid4().hex[:12]}"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
