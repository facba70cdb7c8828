"""Palantir's path and query parameters, with the formats the OpenAPI document states.

A format the handlers check themselves (a version string, a page token) is in the schema by
``schema_extra`` rather than Litestar's ``pattern``, so a value that breaks it gets Palantir's
own error (``InvalidAgentVersion``, ``InvalidPageToken``) naming the value, as the SDK
expects, instead of a generic one.
"""

from __future__ import annotations

import re
from typing import Annotated

from litestar.params import Parameter, QueryParameter

from server.surfaces.errors import SurfaceError
from server.surfaces.palantir.ids import (
    AGENT_RID,
    SESSION_RID,
    VERSION_PATTERN,
    agent_rid,
    rid_pattern,
)
from streams.paging import KEYSET, OFFSET

_VERSION_FORMAT = {"pattern": VERSION_PATTERN, "examples": ["1.0"]}
_VERSION_TEXT = "An agent version, N.0 or N (Parley's versions have no minor part)."
# Page tokens are the ones the server gave as nextPageToken; an empty one is no token.
SESSIONS_TOKEN = f"^({KEYSET})?$"
VERSIONS_TOKEN = f"^({OFFSET})?$"
_TOKEN_TEXT = "The nextPageToken of the previous page; omit it (or leave it empty) for the first."

# A RID that names no Parley id is AgentNotFound or SessionNotFound, as one that names none.
AgentRid = Annotated[
    str,
    Parameter(
        description="ri.aip-agents..agent.<agentId>",
        schema_extra={"pattern": rid_pattern(AGENT_RID), "examples": [agent_rid("echo")]},
    ),
]
SessionRid = Annotated[
    str,
    Parameter(
        description="ri.aip-agents..session.<conversationId>",
        schema_extra={"pattern": rid_pattern(SESSION_RID)},
    ),
]
PageSize = Annotated[int, QueryParameter(name="pageSize", ge=1, le=100)]
SessionsPageToken = Annotated[
    str | None,
    QueryParameter(
        name="pageToken",
        description=_TOKEN_TEXT,
        schema_extra={"pattern": SESSIONS_TOKEN},
    ),
]
VersionsPageToken = Annotated[
    str | None,
    QueryParameter(
        name="pageToken",
        description=_TOKEN_TEXT,
        schema_extra={"pattern": VERSIONS_TOKEN},
    ),
]
VersionQuery = Annotated[
    str | None, Parameter(description=_VERSION_TEXT, schema_extra=_VERSION_FORMAT)
]
VersionPath = Annotated[str, Parameter(description=_VERSION_TEXT, schema_extra=_VERSION_FORMAT)]


def page_token_of(raw: str | None, pattern: str) -> str | None:
    """The page token to page from: None for none or an empty one; InvalidPageToken for one
    this server could not have given."""
    if not raw:
        return None
    if re.fullmatch(pattern, raw) is None:
        message = (
            f"pageToken must be a nextPageToken this server gave, matching {pattern}; "
            f"got {raw[:80]!r}"
        )
        details = {"pageToken": raw, "message": message}
        raise SurfaceError("invalid", "InvalidPageToken", message, details)
    return raw
