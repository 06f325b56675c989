"""The pipeline configuration: one YAML file, one pydantic model per stage.

``load_config`` is the only way a file becomes a config; its errors name the file and the dotted key
at fault, so a typo in a 200-line YAML points at its line's key, not at a stack trace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from mnaft_core._base import StrictModel
from mnaft_core.data.config import DataConfig
from mnaft_core.evaluation.systems import EvaluateConfig
from mnaft_core.models.config import ModelConfig
from mnaft_core.profiling.runner import ProfileConfig
from mnaft_core.selection.select import METHODS, Method, SelectConfig
from mnaft_core.training.config import FinetuneConfig, TrainMethod

DEFAULT_STORE = "./mnaft-store"
M = TypeVar("M", bound=StrictModel)


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


class SystemSpec(StrictModel):
    """One fine-tuned system of the comparison: a training method and, for masks, the selector."""

    name: str = Field(
        min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="report label"
    )
    method: TrainMethod = Field(description="mnaft (a neuron mask), full, or lora")
    mask: Method | None = Field(
        None, description="selector of the mask (mnaft, random, ...); mnaft method only"
    )
    lr: float | None = Field(None, gt=0.0, le=1.0, description="learning rate override for this system")

    @model_validator(mode="before")
    @classmethod
    def _default_mask(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("method") == "mnaft" and data.get("mask") is None:
            return {**data, "mask": "mnaft"}
        return data

    @model_validator(mode="after")
    def _mask_only_for_mnaft(self) -> SystemSpec:
        if self.method != "mnaft" and self.mask is not None:
            raise ValueError(f"system {self.name}: method {self.method} takes no mask")
        return self


class FinetuneSuite(StrictModel):
    """Shared training settings, the systems compared, and the seeds each is trained with."""

    settings: FinetuneConfig = Field(default_factory=FinetuneConfig, description="shared by every system")
    systems: list[SystemSpec] = Field(
        default_factory=lambda: [SystemSpec(name="mnaft", method="mnaft")],
        min_length=1,
        description="the systems compared: each a name, a training method and its overrides",
    )
    seeds: list[int] = Field([0], min_length=1, description="one training run per system and seed")
    max_train_per_direction: int = Field(0, ge=0, description="cap on training samples (0 = all)")

    @field_validator("systems")
    @classmethod
    def _unique(cls, v: list[SystemSpec]) -> list[SystemSpec]:
        names = [s.name for s in v]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"system names repeat: {dupes}")
        return v

    def system(self, name: str) -> SystemSpec:
        """The configured system ``name``, or one named after a method (full, lora) or a mask selector
        (mnaft, random, ...: mnaft training on that selector's mask) with the shared settings."""
        for s in self.systems:
            if s.name == name:
                return s
        if name in ("full", "lora"):
            return SystemSpec(name=name, method=name)
        if name in METHODS:
            return SystemSpec(name=name, method="mnaft", mask=name)
        configured = ", ".join(s.name for s in self.systems)
        raise ValueError(
            f"no system {name!r}: configured are {configured}; or name a method (full, lora) or a mask "
            f"selector ({', '.join(METHODS)})"
        )

    def config_for(self, system: SystemSpec, seed: int) -> FinetuneConfig:
        update: dict[str, Any] = {"method": system.method, "seed": seed}
        if system.lr is not None:
            update["lr"] = system.lr
        return FinetuneConfig.model_validate({**self.settings.model_dump(), **update})


class ReprofileConfig(StrictModel):
    """Where new checkpoints appear and how often the scheduled deployment looks (`mnaft deploy`)."""

    location: str | None = Field(
        None, description="folder or fsspec URL scanned for checkpoints (e.g. s3://mnaft/store/finetune)"
    )
    cron: str = Field("0 * * * *", min_length=9, description="cron schedule of the scan (UTC)")
    pool: str = Field("gpu", min_length=1, description="work pool that profiles new checkpoints")


class PipelineConfig(StrictModel):
    """Everything one end-to-end run needs. Stages read only their own section."""

    name: str = Field("mnaft", min_length=1, max_length=64, description="run name, shown in reports")
    store: str = Field(DEFAULT_STORE, min_length=1, description="artifact store URL: a folder or fsspec URL")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the multimodal model to adapt")
    data: DataConfig = Field(description="the data stage")
    profile: ProfileConfig = Field(default_factory=ProfileConfig, description="the profile stage")
    select: SelectConfig = Field(default_factory=SelectConfig, description="the select stage (mnaft's mask)")
    finetune: FinetuneSuite = Field(default_factory=lambda: FinetuneSuite(), description="methods compared")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="the evaluate stage")
    reprofile: ReprofileConfig = Field(
        default_factory=ReprofileConfig, description="re-profiling of new checkpoints (deployments)"
    )


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


def parse_model(data: Any, model: type[M], source: str = "<config>") -> M:
    """Validate a mapping as ``model``; errors name ``source`` and each dotted key at fault."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from err


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read a YAML config; ``overrides`` are dotted keys (``data.seed``) applied on top."""
    return load_model(path, PipelineConfig, overrides)


def load_model(path: str | Path, model: type[M], overrides: dict[str, Any] | None = None) -> M:
    """Read a YAML file as ``model`` (the pipeline config, the bootstrap config) with clear errors."""
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
    return parse_model(data, model, str(path))


def _set_dotted(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: override {dotted}: {part} is not a mapping")
        node = child
    node[parts[-1]] = value
