"""Environments on the wire: request bodies, the ``environment`` object, and their mapping.

Parley runs no sandboxes, so ``config`` is only checked for its shape, completed with the
defaults Anthropic's API shows (unrestricted networking, no packages), stored and echoed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from server.surfaces.qoder.bodies import EnvironmentMetadataPatch, checked_metadata
from streams.clock import iso, now_ms
from streams.environments import Environment, new_environment_id
from streams.limits import NO_CONTROLS, Metadata

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=NO_CONTROLS)]
Description = Annotated[str, msgspec.Meta(max_length=2_048)]
Scope = Literal["organization", "account"]

_EMPTY_PACKAGES: dict[str, list[str]] = {
    name: [] for name in ("apt", "cargo", "gem", "go", "npm", "pip")
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "cloud": {
        "type": "cloud",
        "networking": {"type": "unrestricted"},
        "packages": {"type": "packages", **_EMPTY_PACKAGES},
    },
    "self_hosted": {"type": "self_hosted"},
}


class CloudConfig(msgspec.Struct, tag_field="type", tag="cloud", forbid_unknown_fields=True):
    """``networking`` and ``packages`` are kept as given; None keeps what there was."""

    networking: dict[str, Any] | None = None
    packages: dict[str, Any] | None = None


class SelfHostedConfig(
    msgspec.Struct, tag_field="type", tag="self_hosted", forbid_unknown_fields=True
):
    pass


Config = CloudConfig | SelfHostedConfig


def config_of(config: Config | None, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config to store: ``config``'s fields over ``current`` (same type) or the defaults."""
    given = {k: v for k, v in msgspec.to_builtins(config or CloudConfig()).items() if v is not None}
    kind = given["type"]
    base = current if current is not None and current.get("type") == kind else _DEFAULTS[kind]
    merged = {**base, **given}
    if kind == "cloud" and "packages" in given:
        merged["packages"] = {"type": "packages", **_EMPTY_PACKAGES, **given["packages"]}
    return merged


class CreateEnvironment(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    config: Config | None = None
    description: Description | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)
    scope: Scope | None = None

    def __post_init__(self) -> None:
        checked_metadata(self.metadata)

    def environment(self, owner: str) -> Environment:
        """The new environment, ``owner``'s."""
        now = now_ms()
        return Environment(
            environment_id=new_environment_id(),
            owner=owner,
            name=self.name,
            description=self.description,
            scope=self.scope or "organization",
            metadata=self.metadata,
            config=config_of(self.config),
            created_ms=now,
            updated_ms=now,
        )


class UpdateEnvironment(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Omitted fields are kept; ``description: null`` clears it; a ``metadata`` value of
    null or "" deletes that key; ``name``, ``config`` and ``scope`` null are kept."""

    name: Name | msgspec.UnsetType | None = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    config: Config | msgspec.UnsetType | None = msgspec.UNSET
    metadata: EnvironmentMetadataPatch | msgspec.UnsetType = msgspec.UNSET
    scope: Scope | msgspec.UnsetType | None = msgspec.UNSET

    def applied_to(self, current: Environment) -> Environment:
        changes: dict[str, Any] = {}
        if self.name:
            changes["name"] = self.name
        if self.description is not msgspec.UNSET:
            changes["description"] = self.description
        if self.config:
            changes["config"] = config_of(self.config, current.config)
        if self.metadata is not msgspec.UNSET:
            changes["metadata"] = _patched(current.metadata, self.metadata)
        if self.scope:
            changes["scope"] = self.scope
        return msgspec.structs.replace(current, **changes)


def _patched(metadata: dict[str, str], patch: dict[str, str | None]) -> dict[str, str]:
    return checked_metadata({key: value for key, value in {**metadata, **patch}.items() if value})


class EnvironmentBody(msgspec.Struct, kw_only=True):
    id: str
    type: Literal["environment"] = "environment"
    name: str
    description: str | None
    config: dict[str, Any]
    metadata: dict[str, str]
    scope: str | None
    created_at: str
    updated_at: str
    archived_at: str | None


class EnvironmentDeleted(msgspec.Struct, kw_only=True):
    id: str
    type: Literal["environment_deleted"] = "environment_deleted"


def environment_out(environment: Environment) -> EnvironmentBody:
    archived = environment.archived_ms
    return EnvironmentBody(
        id=environment.environment_id,
        name=environment.name,
        description=environment.description,
        config=environment.config,
        metadata=environment.metadata,
        scope=environment.scope,
        created_at=iso(environment.created_ms),
        updated_at=iso(environment.updated_ms),
        archived_at=iso(archived) if archived is not None else None,
    )
