"""The application factory: builds every piece from settings and wires them together."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

from server.auth import Authenticator
from server.errors import exception_handlers
from server.logs import configure_logging
from server.request_id import request_id_middleware
from server.routes.health import healthz, readyz
from server.routes.native import sessions_router
from server.routes.page import page_router
from server.settings import Settings
from streams.agents import BuiltinCatalog, builtin_agents
from streams.backends.registry import BackendRegistry
from streams.keys import Keys
from streams.service import ConversationService

log = logging.getLogger("parley.app")


def _redis(url: str) -> tuple[Redis, ConnectionPool]:
    """A command pool that fails fast during an outage, and the hub's own connection source.

    Requests wait for a free connection rather than fail at the pool's limit, and a dead
    Redis costs a caller a fraction of a second (then 503), not redis-py's default backoff.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        max_connections=64,
        timeout=5,
        socket_connect_timeout=2,
        socket_timeout=5,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
    )
    hub_pool = ConnectionPool.from_url(
        url, socket_connect_timeout=2, socket_timeout=None, retry=Retry(NoBackoff(), 0)
    )
    return Redis(connection_pool=pool), hub_pool


def build_service(settings: Settings) -> tuple[ConversationService, Redis]:
    if not settings.redis_url:
        raise SystemExit("PARLEY_REDIS_URL is not set; `parley serve` starts a private Redis")
    redis, hub_pool = _redis(settings.redis_url)
    config = settings.engine()
    service = ConversationService(
        redis=redis,
        hub_pool=hub_pool,
        keys=Keys(config.key_prefix),
        config=config,
        agents=BuiltinCatalog(builtin_agents()),
        backends=BackendRegistry(),
    )
    return service, redis


def _watch_sigterm(service: ConversationService) -> None:
    """Start the drain at SIGTERM itself: uvicorn only runs shutdown hooks after streams close."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(service.begin_shutdown)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    service, redis = build_service(settings)
    auth = Authenticator(settings)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await service.start()
        _watch_sigterm(service)
        try:
            yield
        finally:
            await service.close()
            await redis.aclose()

    return Litestar(
        route_handlers=[healthz, readyz, sessions_router(), page_router()],
        dependencies={
            "service": Provide(lambda: service, sync_to_thread=False, use_cache=True),
            "settings": Provide(lambda: settings, sync_to_thread=False, use_cache=True),
            "principal": Provide(auth.principal, sync_to_thread=False),
        },
        exception_handlers=exception_handlers(),
        middleware=[request_id_middleware],
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="Parley", version="0.1.0", path="/schema"),
        on_app_init=[_quiet],
        debug=False,
    )


def _quiet(config: AppConfig) -> AppConfig:
    config.logging_config = None
    return config
