"""The pipeline configuration: one YAML file, one pydantic model per stage.

``load_config`` is the only way a file becomes a config; its errors name the file and the dotted key
at fault, so a typo in a 200-line YAML points at its line's key, not at a stack trace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from mnaft_core._base import StrictModel
from mnaft_core.data.config import DataConfig
from mnaft_core.models.config import ModelConfig

DEFAULT_STORE = "./mnaft-store"


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


class PipelineConfig(StrictModel):
    """Everything one end-to-end run needs. Stages read only their own section."""

    name: str = Field("mnaft", min_length=1, max_length=64, description="run name, shown in reports")
    store: str = Field(DEFAULT_STORE, min_length=1, description="artifact store URL: a folder or fsspec URL")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the multimodal model to adapt")
    data: DataConfig = Field(description="the data stage")


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<top level>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        got = e.get("input")
        shown = "" if e["type"] in ("extra_forbidden", "missing") else f" (got {got!r:.80})"
        lines.append(f"  {loc}: {msg}{shown}")
    return f"{source}: invalid configuration\n" + "\n".join(lines)


def parse_config(data: Any, source: str = "<config>") -> PipelineConfig:
    """Validate a mapping (already parsed YAML/JSON); ``source`` names it in errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from err


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read a YAML config; ``overrides`` are dotted keys (``data.seed``) applied on top."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror or err})") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        data = {}
    if isinstance(data, dict):
        for dotted, value in (overrides or {}).items():
            _set_dotted(data, dotted, value, str(path))
    return parse_config(data, str(path))


def _set_dotted(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: override {dotted}: {part} is not a mapping")
        node = child
    node[parts[-1]] = value
