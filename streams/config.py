"""Engine settings, filled in by the server from its own settings."""

from __future__ import annotations

import msgspec


class EngineConfig(msgspec.Struct, kw_only=True, frozen=True):
    key_prefix: str = "parley"
    session_ttl_seconds: int = 7 * 24 * 3600
    replay_retention_seconds: int = 600
    lock_ttl_ms: int = 30_000
    max_input_chars: int = 32_000
    default_refresh_interval_ms: int = 100
    keepalive_seconds: float = 15.0
    redis_outage_bound_seconds: float = 30.0
    backlog_max_chars: int = 4_000_000
    shutdown_grace_seconds: float = 10.0
