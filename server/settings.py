"""Every setting, read from ``PARLEY_*`` environment variables into one Struct."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec

from server.keyring import Keyring, KeysError, load_keys_file, parse_api_keys
from streams.backends.policy import UpstreamPolicy
from streams.config import EngineConfig
from streams.quotas import Limits
from streams.slots import ClusterUrl, is_cluster_url

ENV_PREFIX = "PARLEY_"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class SettingsError(ValueError):
    pass


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Field docs double as the ``parley serve --help`` text and the README table."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    redis_url: str | None = None
    data_dir: str = ".parley"
    api_keys: str = ""
    keys_file: str | None = None
    rate_limit_per_second: float = 0
    rate_limit_burst: int = 0
    max_concurrent_exchanges: int = 0
    token_quota: int = 0
    exchange_quota: int = 0
    quota_window_seconds: int = 0
    allow_insecure: bool = False
    stream_token_secret: str = ""
    stream_token_ttl_seconds: int = 300
    key_prefix: str = "parley"
    session_ttl_seconds: int = 7 * 24 * 3600
    replay_retention_seconds: int = 600
    max_body_bytes: int = 1_048_576
    max_header_line_bytes: int = 16_384
    max_header_bytes: int = 65_536
    max_input_chars: int = 32_000
    keepalive_seconds: float = 15.0
    retry_ms: int = 2_000
    send_timeout_seconds: float = 30.0
    redis_outage_bound_seconds: float = 30.0
    shutdown_grace_seconds: float = 10.0
    run_lock_ttl_seconds: float = 30.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    surfaces: str = "all"
    agents_file: str | None = None
    openai_base_url: str | None = None
    openai_api_key: str = ""
    anthropic_base_url: str | None = None
    anthropic_api_key: str = ""
    upstream_connect_timeout_seconds: float = 10.0
    upstream_first_token_timeout_seconds: float = 60.0
    upstream_idle_timeout_seconds: float = 60.0
    upstream_max_retries: int = 2
    upstream_max_retry_wait_seconds: float = 30.0

    def __repr__(self) -> str:
        """Settings hold keys: a repr shows which are set, never what they are."""
        shown = {
            name: ("[set]" if getattr(self, name) else "") if name in SECRET_SETTINGS else value
            for name, value in msgspec.structs.asdict(self).items()
        }
        return f"Settings({shown})"

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.port <= 65535, "PARLEY_PORT must be 1-65535"),
            (self.workers >= 1, "PARLEY_WORKERS must be at least 1"),
            (self.session_ttl_seconds >= 60, "PARLEY_SESSION_TTL_SECONDS must be at least 60"),
            (self.max_body_bytes >= 1024, "PARLEY_MAX_BODY_BYTES must be at least 1024"),
            *self._header_checks(),
            (self.max_input_chars >= 1, "PARLEY_MAX_INPUT_CHARS must be at least 1"),
            (self.keepalive_seconds > 0, "PARLEY_KEEPALIVE_SECONDS must be positive"),
            (self.send_timeout_seconds > 0, "PARLEY_SEND_TIMEOUT_SECONDS must be positive"),
            (bool(self.key_prefix.strip()), "PARLEY_KEY_PREFIX must not be empty"),
            (self.run_lock_ttl_seconds >= 1, "PARLEY_RUN_LOCK_TTL_SECONDS must be at least 1"),
            *self._stream_token_checks(),
            *self._limit_checks(),
            *self._upstream_checks(),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)
        try:
            parse_api_keys(self.api_keys)
        except KeysError as error:
            raise SettingsError(str(error)) from None
        if self.redis_url and is_cluster_url(self.redis_url):
            try:
                ClusterUrl.parse(self.redis_url)
            except ValueError as error:
                raise SettingsError(f"PARLEY_REDIS_URL: {error}") from None

    def _stream_token_checks(self) -> list[tuple[bool, str]]:
        secret = self.stream_token_secret
        return [
            (
                1 <= self.stream_token_ttl_seconds <= 3600,
                "PARLEY_STREAM_TOKEN_TTL_SECONDS must be 1-3600",
            ),
            (not secret or len(secret) >= 32, "PARLEY_STREAM_TOKEN_SECRET needs 32+ characters"),
        ]

    def _header_checks(self) -> list[tuple[bool, str]]:
        line, total = self.max_header_line_bytes, self.max_header_bytes
        return [
            (line >= 1024, "PARLEY_MAX_HEADER_LINE_BYTES must be at least 1024"),
            (
                total >= line,
                "PARLEY_MAX_HEADER_BYTES must be at least PARLEY_MAX_HEADER_LINE_BYTES",
            ),
        ]

    def _limit_checks(self) -> list[tuple[bool, str]]:
        limits = msgspec.structs.asdict(self.default_limits())
        return [
            (value >= 0, f"PARLEY_{_LIMIT_SETTINGS.get(name, name).upper()} must not be negative")
            for name, value in limits.items()
        ]

    def _upstream_checks(self) -> list[tuple[bool, str]]:
        timeouts = [
            (self.upstream_connect_timeout_seconds, "CONNECT"),
            (self.upstream_first_token_timeout_seconds, "FIRST_TOKEN"),
            (self.upstream_idle_timeout_seconds, "IDLE"),
        ]
        checks = [
            (0 < value <= 3600, f"PARLEY_UPSTREAM_{what}_TIMEOUT_SECONDS must be in (0, 3600]")
            for value, what in timeouts
        ]
        checks += [
            (0 <= self.upstream_max_retries <= 10, "PARLEY_UPSTREAM_MAX_RETRIES must be 0-10"),
            (
                0 <= self.upstream_max_retry_wait_seconds <= 600,
                "PARLEY_UPSTREAM_MAX_RETRY_WAIT_SECONDS must be in [0, 600]",
            ),
        ]
        for name in ("openai_base_url", "anthropic_base_url"):
            url = getattr(self, name)
            ok = url is None or url.startswith(("http://", "https://"))
            checks.append((ok, f"PARLEY_{name.upper()} must be an http:// or https:// URL"))
        return checks

    def upstream_policy(self) -> UpstreamPolicy:
        return UpstreamPolicy(
            connect_timeout=self.upstream_connect_timeout_seconds,
            first_token_timeout=self.upstream_first_token_timeout_seconds,
            idle_timeout=self.upstream_idle_timeout_seconds,
            max_retries=self.upstream_max_retries,
            max_retry_wait=self.upstream_max_retry_wait_seconds,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        raw = {
            name: environ[ENV_PREFIX + name.upper()]
            for name in cls.__struct_fields__
            if ENV_PREFIX + name.upper() in environ
        }
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            message = str(exc)
            if "$." in message:
                field = message.rsplit("$.", 1)[1].rstrip("`")
                message = f"{ENV_PREFIX}{field.upper()}: {message.split(' - at ')[0]}"
            raise SettingsError(message) from exc

    def surface_names(self, known: Sequence[str]) -> list[str]:
        """The surfaces to serve, in ``known`` order: ``all``, or a comma-separated list."""
        asked = {name.strip() for name in self.surfaces.split(",") if name.strip()}
        if asked == {"all"}:
            return list(known)
        unknown = sorted(asked - set(known))
        if unknown or not asked:
            raise SettingsError(
                f"PARLEY_SURFACES: unknown surface {', '.join(unknown) or '(none given)'}; "
                f"choose from all, {', '.join(known)}"
            )
        return [name for name in known if name in asked]

    def default_limits(self) -> Limits:
        return Limits(
            requests_per_second=self.rate_limit_per_second,
            burst=self.rate_limit_burst,
            max_concurrent_exchanges=self.max_concurrent_exchanges,
            token_quota=self.token_quota,
            exchange_quota=self.exchange_quota,
            quota_window_seconds=self.quota_window_seconds,
        )

    def keyring(self) -> Keyring:
        """The keys of ``PARLEY_API_KEYS`` and ``PARLEY_KEYS_FILE``; :class:`KeysError`
        names the file's line for a bad entry."""
        keys = parse_api_keys(self.api_keys)
        if self.keys_file:
            keys += load_keys_file(self.keys_file)
        return Keyring(keys, self.default_limits())

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys.strip() or self.keys_file)

    def check_bind(self) -> None:
        if not self.auth_enabled and self.host not in LOOPBACK and not self.allow_insecure:
            raise SettingsError(
                f"refusing to listen on {self.host} with authentication off: set PARLEY_API_KEYS "
                "or PARLEY_KEYS_FILE, or PARLEY_ALLOW_INSECURE=1 to accept unauthenticated "
                "requests from the network"
            )

    def engine(self) -> EngineConfig:
        return EngineConfig(
            key_prefix=self.key_prefix,
            session_ttl_seconds=self.session_ttl_seconds,
            replay_retention_seconds=self.replay_retention_seconds,
            max_input_chars=self.max_input_chars,
            keepalive_seconds=self.keepalive_seconds,
            redis_outage_bound_seconds=self.redis_outage_bound_seconds,
            shutdown_grace_seconds=self.shutdown_grace_seconds,
            lock_ttl_ms=int(self.run_lock_ttl_seconds * 1000),
        )


_LIMIT_SETTINGS = {"requests_per_second": "rate_limit_per_second", "burst": "rate_limit_burst"}

SECRET_SETTINGS = frozenset(
    {"api_keys", "openai_api_key", "anthropic_api_key", "stream_token_secret"}
)

SETTING_DOCS: dict[str, str] = {
    "host": "Address to listen on. Anything but loopback needs PARLEY_API_KEYS.",
    "port": "Port to listen on.",
    "workers": "Worker processes (parley serve only; uvicorn --workers otherwise).",
    "redis_url": "Redis URL (redis://, rediss://, unix://), or a Redis Cluster's as "
    "redis+cluster://host:port,host:port (rediss+cluster:// for TLS). Unset: parley serve "
    "starts a private server with data in PARLEY_DATA_DIR.",
    "data_dir": "Where the private Redis keeps its append-only data.",
    "api_keys": "Comma-separated `key`, `key=principal` or `key=principal:admin`. Set: "
    "every API request needs a key (`Authorization: Bearer <key>`).",
    "keys_file": "A TOML file of [[keys]]: key, principal, role, signing secret and per-key "
    "limits (see Keys and limits). Combines with PARLEY_API_KEYS; a bad file stops the server.",
    "rate_limit_per_second": "Default request rate per key (token bucket refill); 0: none.",
    "rate_limit_burst": "Default bucket size per key; 0: the rate, rounded up.",
    "max_concurrent_exchanges": "Default cap on a key's exchanges running at once; 0: none.",
    "token_quota": "Default total tokens a key's exchanges may use; 0: none.",
    "exchange_quota": "Default number of exchanges a key may start; 0: none.",
    "quota_window_seconds": "Quotas reset every this many seconds; 0: they never reset.",
    "allow_insecure": "Allow listening beyond loopback with authentication off.",
    "stream_token_secret": "Secret (32+ characters) that signs stream tokens; the same in "
    "every worker. Unset: a random one kept in Redis, shared by every worker.",
    "stream_token_ttl_seconds": "How long a stream token (GET …/stream?token=) stays valid.",
    "key_prefix": "Prefix of every Redis key and channel, so deployments never collide.",
    "session_ttl_seconds": "Idle lifetime of a session; each exchange extends it.",
    "replay_retention_seconds": "How long a finished exchange's replay log stays resumable.",
    "max_body_bytes": "Largest request body; larger ones get 413.",
    "max_header_line_bytes": "Largest request header (name and value); a larger one gets 431.",
    "max_header_bytes": "Most bytes of all request headers together; more get 431.",
    "max_input_chars": "Longest userInput.text; longer ones get 400.",
    "keepalive_seconds": "Comment ping interval on an idle stream.",
    "retry_ms": "The `retry:` reconnect delay sent on every stream.",
    "send_timeout_seconds": "A stream whose client reads nothing for this long is closed.",
    "redis_outage_bound_seconds": "A generation fails when Redis stays away longer than this.",
    "shutdown_grace_seconds": "On SIGTERM, how long generations in flight may finish.",
    "run_lock_ttl_seconds": "A running exchange's lock lives this long unless its process "
    "renews it; after that, watchers end the exchange as failed: interrupted.",
    "log_level": "debug, info, warning or error. Logs are JSON lines on stderr.",
    "surfaces": "The APIs to serve: `all`, or a comma-separated list of native, palantir, "
    "agno, openviking, sonaops, qoder.",
    "agents_file": "A TOML file of [[agents]] loaded at start; a changed agent gets a new "
    "version. A bad file stops the server.",
    "openai_base_url": "Server-wide OpenAI-compatible base URL (vLLM, Ollama, ...). Unset: "
    "https://api.openai.com/v1.",
    "openai_api_key": "Server-wide key for PARLEY_OPENAI_BASE_URL. Never stored or shown.",
    "anthropic_base_url": "Server-wide Anthropic base URL. Unset: https://api.anthropic.com.",
    "anthropic_api_key": "Server-wide Anthropic key. Never stored or shown.",
    "upstream_connect_timeout_seconds": "Most seconds to connect to a model upstream.",
    "upstream_first_token_timeout_seconds": "Most seconds from a request to the first reply text.",
    "upstream_idle_timeout_seconds": "Most seconds between stream events once text flows.",
    "upstream_max_retries": "Retries of a failed upstream request, only before the first "
    "token (429, 5xx, connect errors, timeouts).",
    "upstream_max_retry_wait_seconds": "Longest Retry-After honoured; an upstream asking "
    "for longer fails the exchange.",
}
