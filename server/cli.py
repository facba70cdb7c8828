"""The ``parley`` command: ``parley serve`` runs the server, ``parley bench`` load-tests one."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import NoReturn

import msgspec

from server.logs import configure_logging
from server.settings import ENV_PREFIX, SETTING_DOCS, Settings, SettingsError

log = logging.getLogger("parley.cli")

# server.metrics names it too; not imported from there, to keep this command light.
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_ANNOUNCE_WITHIN_S = 120.0


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the server",
        description="Run Parley. Every option also reads its PARLEY_* environment variable; "
        "an option given here wins.",
    )
    defaults = Settings()
    for name in Settings.__struct_fields__:
        env = ENV_PREFIX + name.upper()
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        serve.add_argument(
            flag,
            dest=name,
            default=None,
            metavar=name.split("_")[-1].upper(),
            help=f"{SETTING_DOCS[name]} [env {env}; default {default!r}]",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    try:
        from server.bench.command import add_bench_arguments
    except ImportError:
        pass
    else:
        add_bench_arguments(sub.add_parser("bench", help="load-test a Parley server"))
    return parser


def serve(args: argparse.Namespace) -> int:
    for name in Settings.__struct_fields__:
        value = getattr(args, name)
        if value is not None:
            os.environ[ENV_PREFIX + name.upper()] = str(value)
    try:
        settings = Settings.from_env()
        settings.check_bind()
    except SettingsError as exc:
        print(f"parley: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if not settings.auth_enabled:
        log.info(
            "authentication is off: neither PARLEY_API_KEYS nor PARLEY_KEYS_FILE is set; "
            "serving loopback only"
        )
    _announce_when_ready(settings)
    with metrics_dir(settings.workers):
        if settings.redis_url:
            return _run_uvicorn(settings)
        return _serve_with_private_redis(settings)


@contextmanager
def metrics_dir(workers: int) -> Iterator[None]:
    """Workers sum their Prometheus metrics through files in one directory (server/metrics.py).

    A directory the user named is used as it is; otherwise several workers get a fresh private
    one, removed at exit, so no values from an earlier run leak in. One worker needs none.
    """
    named = os.environ.get(_MULTIPROC_ENV)
    if named or workers < 2:
        if named:
            Path(named).mkdir(parents=True, exist_ok=True)
        yield
        return
    path = tempfile.mkdtemp(prefix="parley-metrics-")
    os.environ[_MULTIPROC_ENV] = path
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so the `finally` runs
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.environ.pop(_MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def _announce_when_ready(settings: Settings) -> None:
    """Log, once the server answers, where its page, its schema and each API are: one line,
    however many workers (it is the supervising process that says it)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    base = f"http://{host}:{settings.port}"

    def announce() -> None:
        deadline = time.monotonic() + _ANNOUNCE_WITHIN_S
        while not _answers(base + "/healthz"):
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)
        from server.app import surface_mounts

        mounts = surface_mounts(settings)
        log.info(
            f"Parley is ready at {base}/",
            extra={
                "page": f"{base}/",
                "schema": f"{base}/schema",
                "surfaces": {name: [base + p for p in paths] for name, paths in mounts.items()},
            },
        )

    threading.Thread(target=announce, name="parley-announce", daemon=True).start()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _serve_with_private_redis(settings: Settings) -> int:
    from server.embedded_redis import RedisNotFoundError, RedisProcess, RedisStartError

    try:
        redis = RedisProcess(settings.data_dir, appendonly=True).start()
    except (RedisNotFoundError, RedisStartError) as exc:
        print(f"parley: could not start a private Redis: {exc}", file=sys.stderr)
        return 2
    try:
        log.info("started private Redis", extra={"server": redis.describe()})
        os.environ[ENV_PREFIX + "REDIS_URL"] = redis.url
        # uvicorn re-raises the SIGTERM that stopped it once it has put back the handler it
        # found; make that handler an exit, so the `finally` below still stops the Redis.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return _run_uvicorn(msgspec.structs.replace(settings, redis_url=redis.url))
    finally:
        redis.stop()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def _run_uvicorn(settings: Settings) -> int:
    import uvicorn

    uvicorn.run(
        "server.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    from server.bench.command import run_bench

    return int(run_bench(args))


if __name__ == "__main__":
    raise SystemExit(main())
