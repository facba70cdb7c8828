"""What each route handler says of its own wire, read from its signature and its ``opt``.

Litestar describes msgspec Structs its own way, without the constraints msgspec enforces
(``forbid_unknown_fields``, lengths and patterns on optional fields). The types a handler
decodes and answers are described here by msgspec itself, so the document says exactly
what the server accepts.

A handler declares in ``opt``:

- ``"statuses"``: what it answers past its surface's common errors, e.g. ``(204, 409)``;
- ``"streams"``: the media type of a streamed answer, e.g. ``"text/event-stream"``;
- ``"body"`` and ``"body_media"``: the type of a body it reads itself, and its media type
  (JSON unless said); ``"body_required": False`` when it takes an empty body too;
- ``"answer"``: the type of its JSON answer, when its signature returns an ASGI app;
- ``"creates"``: the path parameters its answer fills (see ``links.py``).

A handler that takes the ``admin`` dependency may answer 403 to a key without that role.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

import msgspec
from litestar import Response
from litestar.routes import HTTPRoute
from litestar.typing import FieldDefinition

Key = tuple[str, str]  # (path, lower-case method), as the document's paths hold them


JSON = "application/json"
_ADMIN = (403,)


@dataclass(frozen=True)
class Handler:
    statuses: tuple[int, ...] = ()
    streams: str | None = None
    body: Any = None  # the type its body decodes to, when msgspec can describe it
    body_media: str = JSON
    body_required: bool | None = None  # None: as Litestar read it from the signature
    answer: Any = None  # the type of its JSON answer, when msgspec can describe it
    creates: Mapping[str, str] = field(default_factory=dict)  # path parameter → JSON pointer


def handlers_of(routes: Iterable[Any]) -> dict[Key, Handler]:
    found: dict[Key, Handler] = {}
    for route in routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            signature = handler.parsed_fn_signature
            data = signature.parameters.get("data")
            returns = _unwrapped(signature.return_type.annotation)
            opt = handler.opt
            admin = _ADMIN if "admin" in signature.parameters else ()
            facts = Handler(
                statuses=(*opt.get("statuses", ()), *admin),
                streams=opt.get("streams"),
                body=_describable(opt.get("body", data.raw if data else None)),
                body_media=opt.get("body_media", JSON),
                body_required=opt.get("body_required", _required(data)),
                answer=_describable(opt.get("answer", returns)),
                creates=opt.get("creates", {}),
            )
            for method in handler.http_methods:
                found[(route.path_format, method.lower())] = facts
    return found


def _required(data: FieldDefinition | None) -> bool | None:
    """Litestar documents every ``data`` as required, a default one too."""
    return None if data is None else not data.has_default


def _unwrapped(annotation: Any) -> Any:
    if get_origin(annotation) is Response:
        return get_args(annotation)[0]
    return annotation


def _describable(annotation: Any) -> Any:
    if annotation is None or annotation is type(None):
        return None
    try:
        msgspec.json.schema(annotation)
    except (TypeError, ValueError):
        return None
    return annotation
