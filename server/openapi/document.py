"""Litestar's OpenAPI document, completed with what it cannot see from the handlers.

Litestar documents each handler's success answer and, for errors, only its own validation
body, which Parley never sends. Every error Parley answers goes through one surface's
renderer, in that surface's envelope: each operation gets those answers, the statuses it
can give, and its surface's security schemes. Bodies and answers are described by msgspec
(see ``handlers.py``); streamed answers by their media type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import msgspec

from server.openapi.contract import Contract
from server.openapi.handlers import JSON, Handler, Key
from server.openapi.links import add_links

Document = dict[str, Any]
SCHEMAS = "#/components/schemas/"
WIRE = "wire."  # prefix of the components msgspec describes, apart from Litestar's own
# One Server-Sent Event, as OpenAPI before 3.2 has an event stream's schema describe it:
# every stream Parley sends carries JSON in ``data``.
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
STREAMED = {"text/event-stream": SSE_EVENT}  # other streams: bytes


@dataclass(frozen=True)
class Operations:
    """What the document needs of the app: who owns each path, and each handler's facts."""

    owners: Sequence[tuple[str, str, Contract]]  # (prefix, surface name, contract)
    handlers: Mapping[Key, Handler]

    def owner(self, path: str) -> tuple[str, Contract] | None:
        for prefix, name, contract in self.owners:
            if path == prefix or path.startswith(prefix + "/"):
                return name, contract
        return None


def complete(document: Document, operations: Operations) -> Document:
    """A copy of Litestar's ``document`` with every surface's wire, errors and security."""
    done: Document = msgspec.json.decode(msgspec.json.encode(document))
    components = done.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    wire = _wire_schemas(operations.handlers.values(), schemas)
    errors = _error_schemas(operations, schemas)
    schemes = components.setdefault("securitySchemes", {})
    for path, item in done.get("paths", {}).items():
        owned = operations.owner(path)
        for method, operation in item.items():
            handler = operations.handlers.get((path, method))
            if handler is None or not isinstance(operation, dict):
                continue
            _describe_wire(operation, handler, wire)
            if owned is None:
                continue
            name, contract = owned
            statuses = contract.statuses(path, "requestBody" in operation, handler.statuses)
            _add_answers(operation, statuses, errors[name])
            if contract.security:
                schemes.update({scheme: dict(spec) for scheme, spec in contract.security.items()})
                operation["security"] = [{scheme: []} for scheme in contract.security]
    creators = {key: h.creates for key, h in operations.handlers.items() if h.creates}
    add_links(done, creators)
    _drop_unreferenced(done)
    return done


def _wire_schemas(handlers: Iterable[Handler], schemas: Document) -> dict[Any, Document]:
    types = list({t for h in handlers for t in (h.body, h.answer) if t is not None})
    shapes, defs = msgspec.json.schema_components(types, ref_template=SCHEMAS + WIRE + "{name}")
    schemas.update({WIRE + name: shape for name, shape in defs.items()})
    return dict(zip(types, shapes, strict=True))


def _describe_wire(operation: Document, handler: Handler, wire: Mapping[Any, Document]) -> None:
    if handler.body is not None:
        body = operation.setdefault("requestBody", {"required": True})
        body["content"] = {handler.body_media: {"schema": wire[handler.body]}}
    if handler.body_required is not None and "requestBody" in operation:
        operation["requestBody"]["required"] = handler.body_required
    for status, response in operation.get("responses", {}).items():
        if not status.startswith("2") or "content" not in response:
            continue
        content: Document = {}
        if handler.streams is not None:
            shape = STREAMED.get(handler.streams, {"type": "string", "format": "binary"})
            content[handler.streams] = {"schema": shape}
        if handler.answer is not None:
            content[JSON] = {"schema": wire[handler.answer]}
        response["content"] = content or response["content"]


def _add_answers(operation: Document, statuses: Iterable[int], ref: Callable[[int], str]) -> None:
    responses = operation["responses"]
    for key in [key for key in responses if key[:1] in "45"]:
        del responses[key]  # Litestar's own validation body
    for status in statuses:
        answer: Document = {"description": HTTPStatus(status).phrase}
        if status >= 400:
            answer["content"] = {JSON: {"schema": {"$ref": ref(status)}}}
        responses.setdefault(str(status), answer)


def _error_schemas(operations: Operations, schemas: Document) -> dict[str, Callable[[int], str]]:
    """Each surface's error bodies as components named after it, so names never clash."""
    refs: dict[str, Callable[[int], str]] = {}
    for _, name, contract in operations.owners:
        if name in refs:
            continue
        prefix = f"{name.capitalize()}Error"
        bodies = {0: contract.error_body, **contract.bodies}
        names = {status: f"{prefix}{status or ''}" for status in bodies}
        template = SCHEMAS + prefix + ".{name}"
        for status, body in bodies.items():
            types = body if isinstance(body, tuple) else (body,)
            shapes, defs = msgspec.json.schema_components(types, ref_template=template)
            schemas.update({f"{prefix}.{key}": value for key, value in defs.items()})
            schemas[names[status]] = shapes[0] if len(shapes) == 1 else {"anyOf": list(shapes)}
        refs[name] = _ref_of(names)
    return refs


def _ref_of(names: Mapping[int, str]) -> Callable[[int], str]:
    def ref(status: int) -> str:
        return SCHEMAS + names.get(status, names[0])

    return ref


def _drop_unreferenced(document: Document) -> None:
    """Litestar's descriptions of the types msgspec now describes are left unused."""
    schemas: Document = document["components"]["schemas"]
    reached: set[str] = set()
    pending = _refs_in(document["paths"])
    while pending:
        name = pending.pop()
        if name in reached or name not in schemas:
            continue
        reached.add(name)
        pending |= _refs_in(schemas[name])
    for name in set(schemas) - reached:
        del schemas[name]


def _refs_in(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"][len(SCHEMAS) :]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs_in(value)
        return found
    if isinstance(node, list):
        return {ref for item in node for ref in _refs_in(item)}
    return set()
