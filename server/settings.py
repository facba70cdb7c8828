"""Every setting, read from ``PARLEY_*`` environment variables into one Struct."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Literal

import msgspec

from streams.config import EngineConfig

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
    allow_insecure: bool = False
    key_prefix: str = "parley"
    session_ttl_seconds: int = 7 * 24 * 3600
    replay_retention_seconds: int = 600
    max_body_bytes: int = 1_048_576
    max_input_chars: int = 32_000
    keepalive_seconds: float = 15.0
    retry_ms: int = 2_000
    send_timeout_seconds: float = 30.0
    redis_outage_bound_seconds: float = 30.0
    shutdown_grace_seconds: float = 10.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.port <= 65535, "PARLEY_PORT must be 1-65535"),
            (self.workers >= 1, "PARLEY_WORKERS must be at least 1"),
            (self.session_ttl_seconds >= 60, "PARLEY_SESSION_TTL_SECONDS must be at least 60"),
            (self.max_body_bytes >= 1024, "PARLEY_MAX_BODY_BYTES must be at least 1024"),
            (self.max_input_chars >= 1, "PARLEY_MAX_INPUT_CHARS must be at least 1"),
            (self.keepalive_seconds > 0, "PARLEY_KEEPALIVE_SECONDS must be positive"),
            (self.send_timeout_seconds > 0, "PARLEY_SEND_TIMEOUT_SECONDS must be positive"),
            (bool(self.key_prefix.strip()), "PARLEY_KEY_PREFIX must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)
        self.principals()

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

    def principals(self) -> dict[str, str]:
        """API key -> principal. ``key=principal``; a bare key is named after its hash."""
        out: dict[str, str] = {}
        for entry in filter(None, (e.strip() for e in self.api_keys.split(","))):
            key, _, principal = entry.partition("=")
            if not key.strip():
                raise SettingsError("PARLEY_API_KEYS has an entry with an empty key")
            out[key.strip()] = principal.strip() or key_principal(key.strip())
        return out

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys.strip())

    def check_bind(self) -> None:
        if not self.auth_enabled and self.host not in LOOPBACK and not self.allow_insecure:
            raise SettingsError(
                f"refusing to listen on {self.host} with authentication off: set PARLEY_API_KEYS, "
                "or PARLEY_ALLOW_INSECURE=1 to accept unauthenticated requests from the network"
            )

    def engine(self) -> EngineConfig:
        return EngineConfig(
            key_prefix=self.key_prefix,
            session_ttl_seconds=self.session_ttl_seconds,
            replay_retention_seconds=self.replay_retention_seconds,
            max_input_chars=self.max_input_chars,
            keepalive_seconds=self.keepalive_seconds,
            retry_ms=self.retry_ms,
            redis_outage_bound_seconds=self.redis_outage_bound_seconds,
            shutdown_grace_seconds=self.shutdown_grace_seconds,
        )


def key_principal(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


SETTING_DOCS: dict[str, str] = {
    "host": "Address to listen on. Anything but loopback needs PARLEY_API_KEYS.",
    "port": "Port to listen on.",
    "workers": "Worker processes (parley serve only; uvicorn --workers otherwise).",
    "redis_url": "Redis URL. Unset: parley serve starts a private server with data in "
    "PARLEY_DATA_DIR.",
    "data_dir": "Where the private Redis keeps its append-only data.",
    "api_keys": "Comma-separated `key` or `key=principal`. Set: every /v1 request needs "
    "`Authorization: Bearer <key>`.",
    "allow_insecure": "Allow listening beyond loopback with authentication off.",
    "key_prefix": "Prefix of every Redis key and channel, so deployments never collide.",
    "session_ttl_seconds": "Idle lifetime of a session; each exchange extends it.",
    "replay_retention_seconds": "How long a finished exchange's replay log stays resumable.",
    "max_body_bytes": "Largest request body; larger ones get 413.",
    "max_input_chars": "Longest userInput.text; longer ones get 400.",
    "keepalive_seconds": "Comment ping interval on an idle stream.",
    "retry_ms": "The `retry:` reconnect delay sent on every stream.",
    "send_timeout_seconds": "A stream whose client reads nothing for this long is closed.",
    "redis_outage_bound_seconds": "A generation fails when Redis stays away longer than this.",
    "shutdown_grace_seconds": "On SIGTERM, how long generations in flight may finish.",
    "log_level": "debug, info, warning or error. Logs are JSON lines on stderr.",
}
