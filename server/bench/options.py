"""The bench's options: one Struct, filled from the command line."""

from __future__ import annotations

import argparse
import os
import re
from typing import Literal

import msgspec

Mode = Literal["streaming", "blocking", "join", "mixed"]
MODES: tuple[Mode, ...] = ("streaming", "blocking", "join", "mixed")
# The labels of the report's other columns, which a variant may not take.
RESERVED_LABELS = ("parley", "baseline", "naive-redis")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class BenchOptions(msgspec.Struct, kw_only=True, frozen=True):
    url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    mode: Mode = "streaming"
    concurrency: int = 100
    duration_s: float = 20.0
    exchanges: int | None = None
    refresh_interval_ms: int = 100
    tokens_per_second: float = 20.0
    reply_tokens: int = 200
    first_token_latency_ms: int = 200
    watchers: int = 2
    ramp_up_s: float | None = None
    request_timeout_s: float | None = None
    server_pid: int | None = None
    redis_pids: tuple[int, ...] = ()
    variant: tuple[str, str] | None = None
    variant_pid: int | None = None
    baseline: bool = False
    naive_redis_url: str | None = None
    baseline_only: bool = False
    baseline_workers: int = 2
    baseline_writer: Literal["litestar", "parley", "sse-starlette"] = "litestar"
    json_path: str | None = None
    step: bool = False
    step_factor: float = 1.5
    step_max: int = 20_000
    max_p99_lateness_ms: float = 50.0
    quiet: bool = False

    @property
    def measure_bare(self) -> bool:
        """``--baseline``; ``--baseline-only`` alone means the bare baseline too."""
        return self.baseline or (self.baseline_only and self.naive_redis_url is None)

    @property
    def ramp_s(self) -> float:
        """Ramp-up; by default sessions start at 1,000 per second."""
        return self.ramp_up_s if self.ramp_up_s is not None else self.concurrency / 1000.0

    @property
    def timeout_s(self) -> float:
        """Per-request limit; by default the reply's own duration plus 30 s."""
        if self.request_timeout_s is not None:
            return self.request_timeout_s
        generation = self.first_token_latency_ms / 1000 + self.reply_tokens / self.tokens_per_second
        return generation + 30.0


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every ``parley bench`` option to ``parser``."""
    d = BenchOptions()
    target = parser.add_argument_group("target")
    target.add_argument(
        "--url",
        default=os.environ.get("PARLEY_BENCH_URL", d.url),
        help="Parley base URL (default %(default)s, or $PARLEY_BENCH_URL)",
    )
    target.add_argument(
        "--api-key",
        default=os.environ.get("PARLEY_BENCH_API_KEY"),
        help="sent as 'Authorization: Bearer KEY' (default $PARLEY_BENCH_API_KEY)",
    )
    target.add_argument(
        "--server-pid",
        type=int,
        help="sample CPU and RSS of this process and its children (the workers)",
    )
    target.add_argument(
        "--redis-pid",
        type=int,
        action="append",
        default=[],
        dest="redis_pids",
        metavar="PID",
        help="count this Redis process into the server's CPU and RSS (Parley's, the "
        "variant's and naive-redis's): the target is Parley + its Redis; repeat it for a "
        "Redis made of several processes (a cluster's nodes: their figures are summed); "
        "needs --server-pid for Parley and --variant-pid for a variant",
    )
    target.add_argument(
        "--variant",
        metavar="LABEL=URL",
        type=_variant,
        help="also measure a second Parley at URL (e.g. built another way) in the same run, "
        "right after Parley, as a column named LABEL, with a table of its ratios to Parley "
        "(variant / parley); same load, --api-key and bars as Parley",
    )
    target.add_argument(
        "--variant-pid",
        type=int,
        metavar="PID",
        help="sample CPU and RSS of the variant's server process and its children, with "
        "--redis-pid's Redis counted in as for Parley",
    )
    load = parser.add_argument_group("load")
    load.add_argument(
        "--mode",
        choices=MODES,
        default=d.mode,
        help="streaming; blocking; join (K watchers per exchange on GET .../stream); "
        "mixed (per session: 2 streaming, 1 blocking, 1 join in every 4)",
    )
    load.add_argument(
        "-c",
        "--concurrency",
        type=_positive_int,
        default=d.concurrency,
        help="concurrent sessions, each running one exchange at a time",
    )
    load.add_argument(
        "-d",
        "--duration",
        type=float,
        default=d.duration_s,
        dest="duration_s",
        help="seconds of full load after ramp-up; running exchanges then finish",
    )
    load.add_argument(
        "-n", "--exchanges", type=_positive_int, help="exchanges per session (replaces --duration)"
    )
    load.add_argument(
        "--watchers",
        type=int,
        default=d.watchers,
        help="extra watchers per exchange in join mode (default %(default)s)",
    )
    load.add_argument(
        "--ramp-up",
        type=float,
        dest="ramp_up_s",
        help="seconds over which sessions start (default: 1,000 per second)",
    )
    load.add_argument(
        "--timeout",
        type=float,
        dest="request_timeout_s",
        help="per-request limit in seconds (default: reply duration + 30 s)",
    )
    model = parser.add_argument_group("session and synthetic model")
    model.add_argument(
        "--refresh-interval-ms",
        type=int,
        default=d.refresh_interval_ms,
        help="each session's delta flush interval (default %(default)s)",
    )
    model.add_argument(
        "--tokens-per-second",
        type=float,
        default=d.tokens_per_second,
        help="synthetic model speed (default %(default)s)",
    )
    model.add_argument(
        "--reply-tokens",
        type=_positive_int,
        default=d.reply_tokens,
        help="synthetic reply length (default %(default)s)",
    )
    model.add_argument(
        "--first-token-latency-ms",
        type=int,
        default=d.first_token_latency_ms,
        help="synthetic model's wait before its first token (default %(default)s)",
    )
    base = parser.add_argument_group("baselines")
    base.add_argument(
        "--baseline",
        action="store_true",
        help="also measure the bare Litestar SSE baseline (no Redis) and report ratios to it",
    )
    base.add_argument(
        "--naive-redis",
        metavar="REDIS_URL",
        dest="naive_redis_url",
        help="also measure the naive-redis baseline (Litestar + redis-py pub/sub, one "
        "subscription per stream, no replay or resume) on this Redis and report ratios to it",
    )
    base.add_argument(
        "--baseline-only",
        action="store_true",
        help="measure only the baselines named (the bare one when none is), no Parley server",
    )
    base.add_argument(
        "--baseline-workers",
        type=_positive_int,
        default=d.baseline_workers,
        help="uvicorn workers of each baseline; match the server's (default %(default)s)",
    )
    base.add_argument(
        "--baseline-writer",
        choices=["litestar", "parley", "sse-starlette"],
        default=d.baseline_writer,
        help="what writes the bare baseline's SSE: Litestar's Stream, Parley's own streamed "
        "response, or sse-starlette's EventSourceResponse (default %(default)s); "
        "naive-redis always uses Litestar's ServerSentEvent",
    )
    out = parser.add_argument_group("steps and output")
    out.add_argument(
        "--step",
        action="store_true",
        help="raise concurrency by --step-factor until the bars fail; "
        "report the largest passing level",
    )
    out.add_argument(
        "--step-factor",
        type=float,
        default=d.step_factor,
        help="concurrency multiplier between steps (default %(default)s)",
    )
    out.add_argument(
        "--step-max",
        type=_positive_int,
        default=d.step_max,
        help="highest concurrency tried (default %(default)s)",
    )
    out.add_argument(
        "--max-p99-lateness-ms",
        type=float,
        default=d.max_p99_lateness_ms,
        help="lateness bar of --step and of the exit status (default %(default)s)",
    )
    out.add_argument("--json", dest="json_path", metavar="PATH", help="also write the report here")
    out.add_argument("-q", "--quiet", action="store_true", help="no live progress line")


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    fields = {name: getattr(args, name) for name in BenchOptions.__struct_fields__}
    return msgspec.convert(fields, BenchOptions)


def _variant(text: str) -> tuple[str, str]:
    """``LABEL=URL`` into its two parts."""
    label, equals, url = text.partition("=")
    if not equals or not _LABEL.fullmatch(label):
        raise argparse.ArgumentTypeError(
            "give LABEL=URL, LABEL made of letters, digits, '.', '_' and '-'"
        )
    if label in RESERVED_LABELS:
        raise argparse.ArgumentTypeError(f"{label!r} names another column: choose another label")
    if not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {url!r}")
    return label, url


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
