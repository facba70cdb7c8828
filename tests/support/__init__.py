"""Helpers for tests that run against a real Redis and real uvicorn processes."""

from server.embedded_redis import RedisProcess, free_port
from tests.support.servers import ServerFactory, ServerProcess, new_key_prefix, start_server
from tests.support.sse import (
    SseEvent,
    SseParser,
    collect_events,
    iter_events,
    json_data,
    open_stream,
    stream_events,
)

__all__ = [
    "RedisProcess",
    "ServerFactory",
    "ServerProcess",
    "SseEvent",
    "SseParser",
    "collect_events",
    "free_port",
    "iter_events",
    "json_data",
    "new_key_prefix",
    "open_stream",
    "start_server",
    "stream_events",
]
