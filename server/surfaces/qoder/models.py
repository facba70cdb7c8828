"""The model an agent names on this API, and the Parley model that serves it.

- ``synthetic-<mode>``: Parley's synthetic model in that mode (``synthetic-echo``,
  ``synthetic-lorem``);
- ``claude-…``: Anthropic, the id sent upstream as is;
- ``openai/<name>``: the OpenAI-compatible upstream (OpenAI, or ``PARLEY_OPENAI_BASE_URL``:
  vLLM, Ollama...), ``<name>`` sent as is; ``gpt-…`` is short for ``openai/gpt-…``.

Anything else is a 400 naming ``model``; :data:`MODEL_PATTERN` states the same rule in the
OpenAPI document. Whether the server holds a key for the upstream is checked when the agent
is written (:mod:`streams.agent_checks`): a model it cannot serve is not found (404 naming
``model``), as Anthropic's API answers a model it does not have.
"""

from __future__ import annotations

from typing import get_args, get_type_hints

from server.surfaces.qoder.errors import api_error
from streams.backends.base import ModelSpec
from streams.backends.synthetic import SyntheticParams

SYNTHETIC = "synthetic-"
OPENAI = "openai/"
SYNTHETIC_MODES: tuple[str, ...] = get_args(get_type_hints(SyntheticParams)["mode"])
MODEL_PATTERN = (
    rf"^(?:{SYNTHETIC}(?:{'|'.join(SYNTHETIC_MODES)})|claude-[\s\S]*|gpt-[\s\S]*"
    rf"|{OPENAI}[\s\S]+)(?![\s\S])"
)


def model_spec(model: str, current: ModelSpec | None = None) -> ModelSpec:
    """The spec ``model`` names; ``current`` is kept whole (params too) if it names the same."""
    if current is not None and model_id(current) == model:
        return current
    if model.startswith(SYNTHETIC) and model.removeprefix(SYNTHETIC) in SYNTHETIC_MODES:
        mode = model.removeprefix(SYNTHETIC)
        return ModelSpec(provider="synthetic", name=model, params={"mode": mode})
    if model.startswith("claude-"):
        return ModelSpec(provider="anthropic", name=model)
    if model.startswith("gpt-"):
        return ModelSpec(provider="openai", name=model)
    if model.startswith(OPENAI) and len(model) > len(OPENAI):
        return ModelSpec(provider="openai", name=model.removeprefix(OPENAI))
    modes = ", ".join(SYNTHETIC + mode for mode in SYNTHETIC_MODES)
    raise api_error(
        "invalid_request_error",
        f"model {model!r} is not one this server knows: use {modes}, claude-…, gpt-… "
        "or openai/<name>",
        param="model",
    )


def model_id(spec: ModelSpec) -> str:
    """The id :func:`model_spec` reads back as ``spec``'s model, for any Parley agent."""
    if spec.provider == "synthetic":
        return SYNTHETIC + str(spec.params.get("mode", "lorem"))
    if spec.provider == "openai" and not spec.name.startswith("gpt-"):
        return OPENAI + spec.name
    return spec.name
