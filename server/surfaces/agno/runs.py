"""``POST /agents/{agent_id}/runs`` and its cancel: a run is one exchange of a session.

The run's fields come as a form, urlencoded or multipart, as AgentOS takes them: ``message``,
``stream`` (default true; Agno's client sends "true"/"false"), ``session_id`` (empty or
absent: a new session; an unknown one is created under that id) and ``user_id``. Parley
takes text only, so uploads and media fields are refused rather than silently dropped.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, post
from litestar.datastructures import UploadFile
from litestar.params import Parameter
from litestar.response.base import ASGIResponse
from litestar.status_codes import HTTP_200_OK
from litestar.types import ASGIApp, Dependencies

from server.metrics import MetricsExporter
from server.streaming import EVENT_STREAM, EVENT_STREAM_HEADERS, OpenStreams
from server.surfaces.agno.errors import bad_request, invalid, no_session
from server.surfaces.agno.ids import new_session_id, run_ids_of, session_id_of
from server.surfaces.agno.stream import Run, run_frames, started_frame
from server.surfaces.agno.wire import (
    FALSE_WORDS,
    TRUE_WORDS,
    RunForm,
    RunOutput,
    RunRequest,
    run_output,
)
from server.surfaces.errors import SurfaceError
from streams import types as domain
from streams.agent_store import RedisAgentCatalog
from streams.clock import now_ms
from streams.errors import NotFound, NotRunning
from streams.limits import check_user_id
from streams.service import ConversationService
from streams.types import NewSession, Turn

AgentId = Annotated[str, Parameter(description="The agent's id, as in /v1/agents.")]
FORM = "application/x-www-form-urlencoded"  # what AgentOSClient sends; multipart is read too
_MEDIA = ("images", "audio", "videos", "files", "input_files")
_encode = msgspec.json.Encoder().encode


class Empty(msgspec.Struct):
    """Agno's answer to a cancel: ``{}``."""


async def _form(request: Request[Any, Any, Any]) -> RunForm:
    form = await request.form()
    fields = list(form.multi_items())
    if any(isinstance(value, UploadFile) for _, value in fields):
        raise bad_request("Parley takes text only: file uploads are not supported")
    values = {key: value for key, value in fields if isinstance(value, str)}
    if any(values.get(name) for name in _MEDIA):
        raise bad_request(
            "Parley takes text only: images, audio, videos and files are not supported"
        )
    if "message" not in values:
        raise invalid(["body", "message"], "Field required", "missing")
    return RunForm(
        message=values["message"],
        stream=_boolean(values.get("stream", "true")),
        session_id=values.get("session_id") or None,
        user_id=_user_id(values.get("user_id") or None),
    )


def _user_id(value: str | None) -> str | None:
    """A form field skips the wire Struct's checks, so the user id's rule is applied here."""
    try:
        if value is not None:
            check_user_id(value, "user_id")
    except ValueError as error:
        raise invalid(["body", "user_id"], str(error), "value_error") from None
    return value


def _boolean(text: str) -> bool:
    """A form boolean, read as pydantic reads one."""
    lowered = text.strip().lower()
    if lowered in TRUE_WORDS or lowered in FALSE_WORDS:
        return lowered in TRUE_WORDS
    raise invalid(
        ["body", "stream"],
        "Input should be a valid boolean, unable to interpret input",
        "bool_parsing",
    )


async def _session(
    service: ConversationService, principal: str, agent_id: str, form: RunForm
) -> domain.Session:
    """The run's session: a new one, or the one named, created under that id if it is new."""
    new = NewSession(agent_id=agent_id, user_id=form.user_id)
    if form.session_id is None:
        return await service.create_session(principal, new)
    session = await service.get_or_create_session(principal, new_session_id(form.session_id), new)
    if form.user_id is not None and session.user_id not in (None, form.user_id):
        raise no_session(form.session_id)
    if session.agent_id != agent_id:
        raise SurfaceError(
            "conflict",
            "conflict",
            f"Session {form.session_id} belongs to agent {session.agent_id}; run it there",
            {},
        )
    return session


@post(
    "/{agent_id:str}/runs",
    summary="Run the agent on a message",
    status_code=HTTP_200_OK,
    opt={
        "streams": EVENT_STREAM,
        "answer": RunOutput,
        "body": RunRequest,
        "body_media": FORM,
        "statuses": (409,),
    },
)
async def create_run(
    agent_id: AgentId,
    request: Request[Any, Any, Any],
    service: ConversationService,
    agents: RedisAgentCatalog,
    principal: str,
    open_streams: OpenStreams,
    exporter: MetricsExporter,
) -> ASGIApp:
    """``stream`` true: Server-Sent Events; a dropped stream cancels the run, as in AgentOS.
    ``stream`` false: the finished run as a RunOutput."""
    form = await _form(request)
    turn = Turn(text=form.message)
    await agents.resolve(agent_id, None)
    service.check_turn(turn)
    session = await _session(service, principal, agent_id, form)
    agent = await agents.resolve(session.agent_id, session.agent_version)
    sid = session.session_id
    if not form.stream:
        exchange = await service.blocking_continue(principal, sid, turn)
        body = _encode(run_output(exchange, session, agent))
        return ASGIResponse(body=body, media_type="application/json")
    watch = await service.streaming_continue(principal, sid, turn)
    run = Run(agent=agent, session_id=sid, run_id=watch.xid)

    def on_close(finished: bool) -> None:
        if not finished:
            service.cancel_local(sid, run.run_id)

    frames = run_frames(watch, run, started_frame(run, now_ms()), exporter.metrics.delivered)
    return open_streams.respond(frames, headers=EVENT_STREAM_HEADERS, on_close=on_close)


@post(
    "/{agent_id:str}/runs/{run_id:str}/cancel",
    summary="Cancel a run; {} whether it was running or not",
    status_code=HTTP_200_OK,
)
async def cancel_run(
    agent_id: AgentId,
    run_id: str,
    service: ConversationService,
    agents: RedisAgentCatalog,
    principal: str,
    session_id: str | None = None,
) -> Empty:
    """Without ``session_id`` (Agno's client sends none), the run is looked for among the
    caller's sessions. Answers once the run has ended, so its end is stored."""
    await agents.resolve(agent_id, None)
    for xid in run_ids_of(run_id):
        sid = session_id_of(session_id) if session_id else None
        sid = sid or await service.running_session_of(principal, xid)
        if sid is None:
            continue
        with contextlib.suppress(NotFound, NotRunning):
            await service.cancel(principal, sid, xid)
            break
    return Empty()


def runs_router(dependencies: Dependencies) -> Router:
    return Router(
        path="/agents",
        route_handlers=[create_run, cancel_run],
        dependencies=dependencies,
        tags=["agno"],
    )
