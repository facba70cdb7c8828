"""The application factory: builds every piece from settings and wires them together."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from server import heap
from server.agents_file import AgentsFileError, load_agents_file
from server.allow import allow_middleware
from server.auth import Authenticator, Nonces
from server.header_limits import HeaderLimits, header_limit_middleware
from server.keyring import Keyring, KeysError
from server.logs import configure_logging
from server.metrics import Metrics, MetricsExporter, request_clock_middleware, service_readings
from server.openapi import render_plugins
from server.request_id import request_id_middleware
from server.routes.health import healthz, readyz
from server.routes.metrics import metrics as metrics_route
from server.routes.page import page_router
from server.settings import Settings, SettingsError
from server.stream_tokens import stream_tokens
from server.streaming import OpenStreams, StreamResponse, StreamWriter
from server.surfaces import (
    Surface,
    Surfaces,
    agno,
    native,
    openviking,
    palantir,
    qoder,
    sonaops,
)
from streams.agent_checks import check_agent
from streams.agent_store import RedisAgentCatalog
from streams.agents import Agent, builtin_agents
from streams.backends.makers import ProviderDefaults, UpstreamMakers
from streams.backends.registry import BackendRegistry
from streams.backends.upstreams import UpstreamBackends, UpstreamProvider
from streams.connect import Connections, RedisClient
from streams.environments import RedisEnvironments
from streams.errors import Unavailable
from streams.keys import Keys
from streams.quotas import Quotas
from streams.reaper import Reaper
from streams.runner import RunObserver
from streams.service import ConversationService
from streams.store import Store

log = logging.getLogger("parley.app")


class SurfacePackage(Protocol):
    """A package of ``server.surfaces``: the paths it owns, and its factory."""

    @property
    def PREFIXES(self) -> tuple[str, ...]: ...

    def surface(self, auth: Authenticator) -> Surface: ...


SURFACES: dict[str, SurfacePackage] = {
    "native": native,
    "palantir": palantir,
    "agno": agno,
    "openviking": openviking,
    "sonaops": sonaops,
    "qoder": qoder,
}


def served_surfaces(settings: Settings) -> list[str]:
    try:
        return settings.surface_names(list(SURFACES))
    except SettingsError as error:
        raise SystemExit(f"parley: {error}") from None


def surface_mounts(settings: Settings) -> dict[str, tuple[str, ...]]:
    """Where each served surface is mounted, for the start-up line."""
    return {name: SURFACES[name].PREFIXES for name in served_surfaces(settings)}


@dataclass(frozen=True)
class Parts:
    """What the factory builds; the lifespan starts and closes them."""

    service: ConversationService
    redis: RedisClient
    agents: RedisAgentCatalog
    upstreams: UpstreamBackends
    file_agents: list[Agent]
    quotas: Quotas
    environments: RedisEnvironments


def provider_defaults(settings: Settings) -> dict[UpstreamProvider, ProviderDefaults]:
    return {
        "openai": ProviderDefaults(settings.openai_base_url, settings.openai_api_key or None),
        "anthropic": ProviderDefaults(
            settings.anthropic_base_url, settings.anthropic_api_key or None
        ),
    }


def build_service(
    settings: Settings, keyring: Keyring, observer: RunObserver | None = None
) -> Parts:
    if not settings.redis_url:
        raise SystemExit("PARLEY_REDIS_URL is not set; `parley serve` starts a private Redis")
    upstreams = UpstreamBackends(settings.upstream_policy())
    makers = UpstreamMakers(upstreams, provider_defaults(settings), os.environ)

    def check(agent: Agent) -> None:
        check_agent(agent, makers.check)

    file_agents: list[Agent] = []
    if settings.agents_file:
        try:
            file_agents = load_agents_file(settings.agents_file, check)
        except AgentsFileError as error:
            raise SystemExit(f"parley: {error}") from None
    config = settings.engine()
    keys = Keys(config.key_prefix)
    connections = Connections(settings.redis_url, keys, keepalive=config.keepalive_seconds)
    redis, batcher = connections.redis, connections.batcher
    agents = RedisAgentCatalog(redis, keys, check=check, builtins=builtin_agents())
    store = Store(redis, keys, config, batcher)
    observer = observer or RunObserver()
    quotas = Quotas(redis, keys, keyring.limits_of, config.lock_ttl_ms, observer.refused)
    service = ConversationService(
        redis=redis,
        keys=keys,
        config=config,
        agents=agents,
        backends=BackendRegistry(makers.makers()),
        hub=connections.hub,
        store=store,
        batcher=batcher,
        reaper=Reaper(redis, store, keys, config),
        observer=observer,
        quotas=quotas,
    )
    environments = RedisEnvironments(redis, keys)
    return Parts(service, redis, agents, upstreams, file_agents, quotas, environments)


async def register_agents(parts: Parts, settings: Settings) -> None:
    """Seed the built-in agents if absent; publish the file's agents that changed.

    The built-ins also answer without Redis, so failing to seed them is only logged; the
    agents file must land, or the server does not start.
    """
    try:
        await parts.agents.seed(builtin_agents())
    except Unavailable as error:
        log.warning("could not seed the built-in agents", extra={"reason": error.message})
    for agent in parts.file_agents:
        try:
            stored, written = await parts.agents.sync(agent)
        except Unavailable as error:
            raise SystemExit(
                f"parley: PARLEY_AGENTS_FILE {settings.agents_file}: could not store agent "
                f"{agent.agent_id!r}: {error.message}"
            ) from None
        if written:
            log.info(
                "agent published from the agents file",
                extra={"agentId": stored.agent_id, "version": stored.version},
            )


def _watch_sigterm(service: ConversationService) -> None:
    """Start the drain at SIGTERM itself: uvicorn only runs shutdown hooks after streams close."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(service.begin_shutdown)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def create_app(
    settings: Settings | None = None, *, writer: StreamWriter = StreamResponse
) -> Litestar:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    metrics = Metrics.from_env()
    try:
        keyring = settings.keyring()
    except KeysError as error:
        raise SystemExit(f"parley: {error}") from None
    parts = build_service(settings, keyring, metrics)
    service = parts.service
    nonces = Nonces(parts.redis, Keys(settings.key_prefix))
    auth = Authenticator(keyring, parts.quotas, nonces, allow_remote=settings.allow_insecure)
    names = served_surfaces(settings)
    served = Surfaces([SURFACES[name].surface(auth) for name in names], fallback=native.render)
    open_streams = OpenStreams(settings.send_timeout_seconds, writer)
    tokens = stream_tokens(settings, parts.redis, Keys(settings.key_prefix))
    exporter = MetricsExporter(metrics, service_readings(service, lambda: len(open_streams)))

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await register_agents(parts, settings)
        await service.start()
        _watch_sigterm(service)
        heap.settle()
        watchdog = asyncio.create_task(open_streams.watch(), name="parley-send-watchdog")
        try:
            yield
        finally:
            watchdog.cancel()
            await service.close()
            await parts.upstreams.aclose()
            await parts.redis.aclose()

    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            metrics_route,
            *served.routers,
            page_router(),
        ],
        dependencies={
            "service": Provide(lambda: service, sync_to_thread=False, use_cache=True),
            "agents": Provide(lambda: parts.agents, sync_to_thread=False, use_cache=True),
            "environments": Provide(
                lambda: parts.environments, sync_to_thread=False, use_cache=True
            ),
            "settings": Provide(lambda: settings, sync_to_thread=False, use_cache=True),
            "open_streams": Provide(lambda: open_streams, sync_to_thread=False, use_cache=True),
            "stream_tokens": Provide(lambda: tokens, sync_to_thread=False, use_cache=True),
            "exporter": Provide(lambda: exporter, sync_to_thread=False, use_cache=True),
        },
        exception_handlers=served.exception_handlers(),
        middleware=[
            request_id_middleware,
            allow_middleware(lambda: app.routes),
            header_limit_middleware(header_limits(settings), served.renderer),
            request_clock_middleware,
        ],
        lifespan=[lifespan, exporter.lifespan],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Parley",
            version="0.1.0",
            path="/schema",
            render_plugins=render_plugins(lambda: served.operations(app.routes)),
        ),
        on_app_init=[_quiet],
        debug=False,
    )
    return app


def header_limits(settings: Settings) -> HeaderLimits:
    return HeaderLimits(line=settings.max_header_line_bytes, total=settings.max_header_bytes)


def _quiet(config: AppConfig) -> AppConfig:
    config.logging_config = None
    return config
