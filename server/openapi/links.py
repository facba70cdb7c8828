"""OpenAPI links from an operation that creates a resource to the operations that use it.

A handler that creates one declares the path parameter its answer fills, and where in its
JSON answer: ``opt={"creates": {"conversation_id": "/conversationId"}}``. Every operation
under its path that names that parameter gets a link, so a client, or a fuzzer's stateful
phase, can follow a create to the reads, writes and deletes of what it made.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from server.openapi.handlers import Key

Document = dict[str, Any]
_PARAMETER = re.compile(r"\{([^}]+)\}")


def add_links(document: Document, creators: Mapping[Key, Mapping[str, str]]) -> None:
    paths: Document = document.get("paths", {})
    for (path, method), fills in creators.items():
        answer = _success(paths.get(path, {}).get(method))
        if answer is None:
            continue
        links = answer.setdefault("links", {})
        under = path.rstrip("/") + "/{"
        for target_path, item in paths.items():
            parameters = _parameters(path, target_path, fills)
            if not target_path.startswith(under) or parameters is None:
                continue
            for target in item.values():
                if isinstance(target, dict) and "operationId" in target:
                    name = target["operationId"]
                    links[name] = {"operationId": name, "parameters": parameters}


def _success(operation: Document | None) -> Document | None:
    responses = (operation or {}).get("responses", {})
    return next((answer for status, answer in responses.items() if status[:1] == "2"), None)


def _parameters(source: str, target: str, fills: Mapping[str, str]) -> dict[str, str] | None:
    """Where each path parameter of ``target`` comes from, or None when one has no source."""
    known = set(_PARAMETER.findall(source))
    parameters: dict[str, str] = {}
    for name in _PARAMETER.findall(target):
        if name in fills:
            parameters[f"path.{name}"] = f"$response.body#{fills[name]}"
        elif name in known:
            parameters[f"path.{name}"] = f"$request.path.{name}"
        else:
            return None
    return parameters if parameters.keys() & {f"path.{name}" for name in fills} else None
