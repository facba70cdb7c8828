"""From Palantir's names in a request to Parley's ids, with Palantir's errors when they fail."""

from __future__ import annotations

from server.surfaces.errors import SurfaceError
from server.surfaces.palantir.ids import (
    AGENT_RID,
    SESSION_RID,
    VERSION_PATTERN,
    parse_rid,
    parse_version,
)
from streams.types import Session


def agent_id_of(rid: str) -> str:
    agent_id = parse_rid(rid, AGENT_RID)
    if agent_id is None:
        raise SurfaceError("not_found", "AgentNotFound", f"no agent {rid}", {"agentRid": rid})
    return agent_id


def session_id_of(agent_rid: str, rid: str) -> str:
    sid = parse_rid(rid, SESSION_RID)
    if sid is None:
        raise no_session(agent_rid, rid)
    return sid


def no_session(agent_rid: str, rid: str) -> SurfaceError:
    ids = {"agentRid": agent_rid, "sessionRid": rid}
    return SurfaceError("not_found", "SessionNotFound", f"no session {rid}", ids)


def version_of(agent_rid: str, text: str, field: str = "version") -> int:
    """``field`` is what the request calls it: ``version`` or the body's ``agentVersion``."""
    version = parse_version(text)
    if version is None:
        message = f"{field} must be N.0 or N, matching {VERSION_PATTERN}; got {text[:80]!r}"
        details = {"agentRid": agent_rid, "version": text, "message": message}
        raise SurfaceError("invalid", "InvalidAgentVersion", message, details)
    return version


def check_agent(session: Session, agent_rid: str, rid: str) -> Session:
    """A session is found only under the agent it talks to."""
    if agent_id_of(agent_rid) != session.agent_id:
        raise no_session(agent_rid, rid)
    return session
