"""``POST /v1/sessions/{id}/streamTokens`` and who may read ``GET …/stream?token=``.

A browser's ``EventSource`` cannot send an ``Authorization`` header, and a key in a URL lands
in proxy and access logs, so keys are refused in query strings: the page asks for a stream
token with its key in the header and passes that instead (:mod:`server.stream_tokens`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, post
from litestar.exceptions import NotAuthorizedException
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_201_CREATED
from litestar.types import Dependencies

from server.auth import Authenticator
from server.keyring import Keyring
from server.stream_tokens import StreamTokens
from server.surfaces.native.sessions import Sid
from streams.clock import iso
from streams.service import ConversationService

KEY_IN_URL = (
    "API keys are not accepted in URLs; POST /v1/sessions/{id}/streamTokens with the key in "
    "the Authorization header and pass ?token="
)
_KEY_PARAMS = frozenset({"access_token", "api_key", "apikey", "key"})

Caller = Callable[[Request[Any, Any, Any]], Awaitable[str]]
Token = Annotated[
    str | None,
    QueryParameter(
        name="token",
        max_length=4096,
        description="A stream token from POST …/streamTokens, for clients that cannot send "
        "headers (EventSource). Without it, the Authorization header is used.",
    ),
]


class StreamToken(msgspec.Struct, rename="camel"):
    token: str
    expires_at: str


def refuse_keys_in_query(request: Request[Any, Any, Any], keyring: Keyring) -> None:
    """401 for ``?access_token=`` or any query value that is a configured key."""
    params = request.query_params
    named = _KEY_PARAMS.intersection(params)
    if named or any(keyring.find(value) for value in params.values() if value):
        raise NotAuthorizedException(KEY_IN_URL)


@post(
    "/{conversation_id:str}/streamTokens",
    summary="A short-lived token that opens this session's stream: GET …/stream?token=",
    status_code=HTTP_201_CREATED,
)
async def create_stream_token(
    conversation_id: Sid,
    service: ConversationService,
    principal: str,
    stream_tokens: StreamTokens,
) -> StreamToken:
    await service.get_session(principal, conversation_id)  # 404 unless it is the caller's
    issued = await stream_tokens.mint(principal, conversation_id)
    return StreamToken(token=issued.token, expires_at=iso(issued.expires_ms))


def stream_caller(auth: Authenticator, keyed: Caller) -> Callable[..., Awaitable[str]]:
    """The ``stream_principal`` dependency: the stream token's principal, else ``keyed``'s,
    admitted as any request of that principal is (one take from its rate limit)."""

    async def stream_principal(
        request: Request[Any, Any, Any],
        conversation_id: Sid,
        stream_tokens: StreamTokens,
        token: Token = None,
    ) -> str:
        if token is None:
            return await keyed(request)
        refuse_keys_in_query(request, auth.keyring)
        holder = await stream_tokens.holder(token, conversation_id)
        return await auth.admit_principal(request, holder)

    return stream_principal


def stream_tokens_router(dependencies: Dependencies) -> Router:
    return Router(
        dependencies=dependencies,
        path="/v1/sessions",
        route_handlers=[create_stream_token],
        tags=["sessions"],
    )
