"""Engine pieces for the core tests, built as `server.app.build_service` builds them.

Every piece uses the test's own key prefix, so tests never see each other's keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from streams.batcher import ScriptBatcher
from streams.config import EngineConfig
from streams.hub import Hub
from streams.keys import Keys
from streams.reaper import Reaper
from streams.store import Store
from tests.core.helpers import Rig, until_true


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    return Keys(key_prefix)


@pytest.fixture
def config(key_prefix: str) -> EngineConfig:
    return EngineConfig(key_prefix=key_prefix, lock_ttl_ms=10_000, keepalive_seconds=15.0)


@pytest.fixture
def store(redis_client: Redis, keys: Keys, config: EngineConfig, batcher: ScriptBatcher) -> Store:
    return Store(redis_client, keys, config, batcher)


@pytest.fixture
async def hub(redis_url: str, keys: Keys, config: EngineConfig) -> AsyncIterator[Hub]:
    hub = Hub(redis_url, keys, keepalive=config.keepalive_seconds)
    await hub.start()
    try:
        await until_true(lambda: hub.connected)
        yield hub
    finally:
        await hub.stop()


@pytest.fixture
async def batcher(redis_url: str) -> AsyncIterator[ScriptBatcher]:
    batcher = ScriptBatcher(redis_url)
    try:
        yield batcher
    finally:
        await batcher.close()


@pytest.fixture
def reaper(redis_client: Redis, store: Store, keys: Keys, config: EngineConfig) -> Reaper:
    return Reaper(redis_client, store, keys, config)


@pytest.fixture
def rig(store: Store, batcher: ScriptBatcher, keys: Keys, config: EngineConfig) -> Rig:
    return Rig(store, batcher, keys, config)
