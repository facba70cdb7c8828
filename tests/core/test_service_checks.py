"""ConversationService: what it refuses before anything is stored (turns, session state)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from streams.agent_store import RedisAgentCatalog
from streams.agents import builtin_agents
from streams.backends.registry import BackendRegistry
from streams.batcher import ScriptBatcher
from streams.config import EngineConfig
from streams.errors import InvalidInput
from streams.hub import Hub
from streams.keys import Keys
from streams.reaper import Reaper
from streams.service import MAX_STATE_BYTES, ConversationService
from streams.store import Store
from streams.types import NewSession, SessionPatch, SessionQuery, Turn
from tests.core.helpers import OWNER

TOO_BIG = {"blob": "x" * MAX_STATE_BYTES}


@pytest.fixture
def service(
    redis_client: Redis,
    keys: Keys,
    config: EngineConfig,
    hub: Hub,
    store: Store,
    batcher: ScriptBatcher,
    reaper: Reaper,
) -> ConversationService:
    return ConversationService(
        redis=redis_client,
        keys=keys,
        config=config,
        agents=RedisAgentCatalog(redis_client, keys, builtins=builtin_agents()),
        backends=BackendRegistry(),
        hub=hub,
        store=store,
        batcher=batcher,
        reaper=reaper,
    )


@pytest.mark.parametrize("text", ["", "   ", "x" * 32_001], ids=["empty", "blank", "too long"])
def test_a_turn_is_refused_before_a_caller_creates_anything_for_it(
    service: ConversationService, text: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        service.check_turn(Turn(text=text))

    assert refused.value.field == "input_text"


async def test_a_session_state_over_the_limit_is_refused_and_nothing_is_stored(
    service: ConversationService, store: Store
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await service.create_session(OWNER, NewSession(agent_id="echo", state=TOO_BIG))

    assert refused.value.field == "state"
    assert (await store.list_sessions(OWNER, SessionQuery())).items == []


async def test_a_patch_with_a_state_over_the_limit_leaves_the_session_as_it_was(
    service: ConversationService,
) -> None:
    session = await service.create_session(OWNER, NewSession(agent_id="echo", state={"n": 1}))

    with pytest.raises(InvalidInput):
        await service.update_session(OWNER, session.session_id, SessionPatch(state=TOO_BIG))

    assert await service.get_session(OWNER, session.session_id) == session
