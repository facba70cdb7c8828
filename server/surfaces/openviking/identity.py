"""Who a request speaks for, in OpenViking's ``user`` terms: the account is the API key's
principal; the user and agent come from OpenViking's headers (stripped; empty is absent)."""

from __future__ import annotations

from typing import Any

from litestar import Request

from server.surfaces.errors import SurfaceError
from server.surfaces.openviking.wire import User
from streams.limits import check_user_id

DEFAULT = "default"


def header(request: Request[Any, Any, Any], name: str) -> str | None:
    return (request.headers.get(name) or "").strip() or None


def agent_header(request: Request[Any, Any, Any]) -> str | None:
    """``X-OpenViking-Agent``: on create, the Parley agent the new session talks to."""
    return header(request, "x-openviking-agent")


def user_header(request: Request[Any, Any, Any]) -> str | None:
    """``X-OpenViking-User``: stored as the session's user, so held to every user id's rule."""
    user = header(request, "x-openviking-user")
    try:
        if user is not None:
            check_user_id(user, "X-OpenViking-User")
    except ValueError as error:
        raise SurfaceError("invalid", "INVALID_ARGUMENT", str(error), {}) from None
    return user


def user_of(request: Request[Any, Any, Any], principal: str, session_user: str | None) -> User:
    return User(
        account_id=principal,
        user_id=user_header(request) or session_user or DEFAULT,
        agent_id=agent_header(request) or DEFAULT,
    )
