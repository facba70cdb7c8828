"""``/v1/keys``: what each key has used of its limits, for admins."""

from __future__ import annotations

import msgspec
from litestar import Router, get
from litestar.types import Dependencies

from server.keyring import Keyring
from streams.clock import iso
from streams.errors import NotFound
from streams.quotas import Quotas


class LimitsBody(msgspec.Struct, rename="camel", kw_only=True):
    """0 means no limit."""

    requests_per_second: float
    burst: int
    max_concurrent_exchanges: int
    token_quota: int
    exchange_quota: int
    quota_window_seconds: int


class KeyUsageBody(msgspec.Struct, rename="camel", kw_only=True):
    """Counts of the current quota window (``windowStartedAt`` null: counted for good)."""

    principal: str
    running_exchanges: int
    exchanges: int
    tokens: int
    window_started_at: str | None
    window_ends_at: str | None
    limits: LimitsBody


def keys_router(dependencies: Dependencies, keyring: Keyring, quotas: Quotas) -> Router:
    @get("/{principal_id:str}/usage", summary="A principal's usage and limits (admin keys only)")
    async def key_usage(principal_id: str, admin: str) -> KeyUsageBody:
        if not keyring.knows(principal_id):
            raise NotFound(
                f"no key belongs to principal {principal_id}",
                resource="principal",
                details={"principal": principal_id},
            )
        usage = await quotas.usage(principal_id)
        return KeyUsageBody(
            principal=usage.principal,
            running_exchanges=usage.running_exchanges,
            exchanges=usage.exchanges,
            tokens=usage.tokens,
            window_started_at=_iso(usage.window_started_ms),
            window_ends_at=_iso(usage.window_ends_ms),
            limits=LimitsBody(**msgspec.structs.asdict(usage.limits)),
        )

    return Router(path="/v1/keys", route_handlers=[key_usage], dependencies=dependencies)


def _iso(ms: int | None) -> str | None:
    return iso(ms) if ms is not None else None
