"""The claim experiment's configuration (``mnaft claim -c configs/claim.yaml``), as docs/claim.md fixes it.

One file holds a whole pipeline config (model, data, profile, select, shared training and evaluation
settings: what every system shares) and what the claim adds: its systems (each a kind, a selection
override for masked systems, a learning-rate grid), the step budget ``S``, seeds, split sizes and the
bootstrap. With ``preregistered: true`` (the default) the file must be the pre-registered design
(``DESIGN``): the 13 systems with their grids, 200 test and 64 validation strings per direction, seeds
0-4, 10,000 resamples, ``S`` a multiple of 10 in 20..80; ``preregistered: false`` allows a subset and
smaller sizes (the tests' toy runs), and its report says it is not the pre-registered experiment.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from mnaft_core._base import StrictModel
from mnaft_core.config import PipelineConfig
from mnaft_core.evaluation.systems import EvaluateConfig
from mnaft_core.selection.lape import LapeConfig
from mnaft_core.selection.select import Method, SelectConfig
from mnaft_core.training.config import FinetuneConfig

SystemKind = Literal["base", "base-read", "cascade", "full", "lora", "mnaft"]
TRAINED: tuple[SystemKind, ...] = ("full", "lora", "mnaft")
# The evaluate stage's name of each untrained system (mnaft_core.evaluation.run).
EVALUATED_AS = {"base": "base", "base-read": "base-read+translate", "cascade": "ocr+mt"}

MASKED_GRID = (5e-4, 1e-3, 2e-3)
# docs/claim.md, "Systems" and "Training": name -> (kind, selection of masked systems, LR grid).
DESIGN: dict[str, tuple[SystemKind, dict[str, Any] | None, tuple[float, ...]]] = {
    "base": ("base", None, ()),
    "base-read": ("base-read", None, ()),
    "cascade": ("cascade", None, ()),
    "full": ("full", None, (3e-5, 1e-4, 3e-4)),
    "lora": ("lora", None, (2e-4, 5e-4, 1e-3)),
    "mnaft": ("mnaft", {"method": "mnaft", "layer_fraction": 0.5}, MASKED_GRID),
    "random": ("mnaft", {"method": "random", "layer_fraction": 0.5}, MASKED_GRID),
    "gradient": ("mnaft", {"method": "gradient", "layer_fraction": 0.5}, MASKED_GRID),
    "specific": ("mnaft", {"method": "specific", "layer_fraction": 0.5}, MASKED_GRID),
    "agnostic": ("mnaft", {"method": "agnostic", "layer_fraction": 0.5}, MASKED_GRID),
    "all-layers": ("mnaft", {"method": "mnaft", "layer_fraction": 1.0}, MASKED_GRID),
    "lape-half": ("mnaft", {"method": "mnaft", "layer_fraction": 0.5,
                            "lape": {"top_rate": 0.005, "filter_rate": 0.975, "activation_bar_ratio": 0.975}},
                  MASKED_GRID),
    "lape-double": ("mnaft", {"method": "mnaft", "layer_fraction": 0.5,
                              "lape": {"top_rate": 0.02, "filter_rate": 0.90, "activation_bar_ratio": 0.90}},
                    MASKED_GRID),
}  # fmt: skip
DESIGN_LAPE = {"top_rate": 0.01, "filter_rate": 0.95, "activation_bar_ratio": 0.95}  # LAPE's own defaults
DESIGN_SIZES = {"test_per_direction": 200, "val_per_direction": 64, "seeds": [0, 1, 2, 3, 4],
                "grid_seed": 0, "bootstrap_samples": 10_000, "warmup_fraction": 0.1, "baseline": "mnaft",
                "decide_against": ["random", "full"]}  # fmt: skip

# Fields of the pipeline section that the claim sets itself: setting them there would be ignored.
OWNED = {
    "finetune": ("systems", "seeds"),
    "finetune.settings": ("steps", "warmup_steps", "lr", "seed", "method"),
    "evaluate": ("split", "max_samples_per_direction", "own_cascade", "cascade", "retention",
                 "significance_samples"),
    "select": ("method",),
}  # fmt: skip


class LapeOverride(StrictModel):
    """LAPE thresholds that differ from the pipeline's select section (unset: the section's)."""

    top_rate: float | None = Field(None, gt=0.0, le=1.0, description="share selected as language-specific")
    filter_rate: float | None = Field(None, ge=0.0, le=1.0, description="candidate probability quantile")
    activation_bar_ratio: float | None = Field(None, ge=0.0, le=1.0, description="activation quantile")


class SelectOverride(StrictModel):
    """How a masked system's mask differs from the pipeline's select section."""

    method: Method = Field("mnaft", description="selector: mnaft, random, gradient, specific, agnostic, ...")
    layer_fraction: float | None = Field(None, gt=0.0, le=1.0, description="share of layers kept")
    lape: LapeOverride = Field(default_factory=LapeOverride, description="LAPE threshold overrides")


class ClaimSystem(StrictModel):
    """One system of the comparison."""

    name: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="label")
    kind: SystemKind = Field(
        description="base (zero-shot), base-read (read, then translate), cascade (OCR -> MT), full, lora, "
        "or mnaft (a neuron mask)"
    )
    select: SelectOverride | None = Field(None, description="mnaft kind: how its mask is selected")
    lr_grid: list[float] = Field(
        default_factory=list, description="trained kinds: learning rates tried on the validation split"
    )

    @model_validator(mode="after")
    def _fits_kind(self) -> ClaimSystem:
        trained = self.kind in TRAINED
        if self.kind == "mnaft" and self.select is None:
            raise ValueError(f"system {self.name}: select: a mnaft-kind system needs its selection")
        if self.kind != "mnaft" and self.select is not None:
            raise ValueError(f"system {self.name}: select: kind {self.kind} trains no mask")
        if trained and not self.lr_grid:
            raise ValueError(f"system {self.name}: lr_grid: a trained system needs at least one rate")
        if not trained and self.lr_grid:
            raise ValueError(f"system {self.name}: lr_grid: kind {self.kind} is not trained")
        if any(not 0.0 < r <= 1.0 for r in self.lr_grid) or len(set(self.lr_grid)) != len(self.lr_grid):
            raise ValueError(f"system {self.name}: lr_grid: rates must be distinct, in (0, 1]")
        return self


class ClaimConfig(StrictModel):
    """The claim experiment: a pipeline config plus the systems, budget, seeds, sizes and bootstrap."""

    name: str = Field("claim", min_length=1, max_length=64, description="experiment name, in the report")
    preregistered: bool = Field(
        True, description="the file must be docs/claim.md's design (false: a toy or pilot run, so marked)"
    )
    pipeline: PipelineConfig = Field(description="model, data, profile, select and shared settings")
    steps: int = Field(ge=1, le=100_000, description="S: optimizer steps of every fine-tuned system")
    warmup_fraction: float = Field(0.1, ge=0.0, le=1.0, description="warm-up steps as a share of S")
    seeds: list[int] = Field([0, 1, 2, 3, 4], min_length=1, description="training seeds of every system")
    grid_seed: int = Field(0, ge=0, description="the seed the learning-rate grid is run with")
    test_per_direction: int = Field(200, ge=1, description="test strings per direction (fewer: an error)")
    val_per_direction: int = Field(64, ge=1, description="validation strings per direction (LR choice)")
    bootstrap_samples: int = Field(10_000, ge=100, le=1_000_000, description="two-level bootstrap resamples")
    bootstrap_seed: int = Field(12345, ge=0, le=2**31 - 1, description="seed of the bootstrap")
    baseline: str = Field("mnaft", description="the system compared with each other one")
    decide_against: list[str] = Field(
        ["random", "full"], min_length=1, description="the systems the decision rule names"
    )
    systems: list[ClaimSystem] = Field(min_length=2, description="every system of the comparison")

    @model_validator(mode="after")
    def _consistent(self) -> ClaimConfig:
        names = [s.name for s in self.systems]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"systems: names repeat: {dupes}")
        by_name = {s.name: s for s in self.systems}
        if self.baseline not in by_name or by_name[self.baseline].kind not in TRAINED:
            raise ValueError(f"baseline: {self.baseline!r} is not a trained system of systems")
        for other in self.decide_against:
            if other not in by_name or other == self.baseline:
                raise ValueError(f"decide_against: {other!r} is not another system of systems")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: repeat ({self.seeds})")
        if self.grid_seed not in self.seeds:
            raise ValueError(f"grid_seed: {self.grid_seed} is not one of seeds {self.seeds}")
        split = self.pipeline.data.split
        if split.max_eval_per_direction < max(self.test_per_direction, self.val_per_direction):
            raise ValueError(
                f"pipeline.data.split.max_eval_per_direction: {split.max_eval_per_direction} keeps fewer "
                f"strings than test_per_direction / val_per_direction ask for"
            )
        for i, s in enumerate(self.systems):
            if s.select and s.select.method == "gradient" and not self.pipeline.profile.gradient:
                raise ValueError(
                    f"pipeline.profile.gradient: system {s.name} (systems.{i}) uses the gradient selector, "
                    "which needs the profile's gradient statistic: set it to true"
                )
            if s.select:
                self.select_config(s, self.grid_seed)  # the merged LAPE thresholds must validate
        for section, fields in OWNED.items():
            node: Any = self.pipeline
            for part in section.split("."):
                node = getattr(node, part)
            for f in fields:
                if f in node.model_fields_set:
                    raise ValueError(
                        f"pipeline.{section}.{f}: set by the claim itself (its systems, steps, seeds, "
                        "split sizes): remove it from the pipeline section"
                    )
        if self.preregistered:
            self._check_design()
        return self

    def _check_design(self) -> None:
        for key, want in DESIGN_SIZES.items():
            if getattr(self, key) != want:
                raise ValueError(
                    f"{key}: the pre-registered design has {want!r}, got {getattr(self, key)!r} "
                    "(preregistered: false for another run)"
                )
        if self.steps % 10 or not 20 <= self.steps <= 80:
            raise ValueError(f"steps: the design's S is a multiple of 10 in 20..80, got {self.steps}")
        names = [s.name for s in self.systems]
        if sorted(names) != sorted(DESIGN):
            missing, extra = sorted(set(DESIGN) - set(names)), sorted(set(names) - set(DESIGN))
            raise ValueError(
                f"systems: the pre-registered design has {len(DESIGN)} systems (missing {missing}, not in "
                f"the design {extra}); preregistered: false for another run"
            )
        for i, s in enumerate(self.systems):
            kind, select, grid = DESIGN[s.name]
            if s.kind != kind:
                raise ValueError(f"systems.{i}.kind: {s.name} is {kind} in the design, got {s.kind}")
            if sorted(s.lr_grid) != sorted(grid):
                raise ValueError(f"systems.{i}.lr_grid: {s.name}'s design grid is {list(grid)}")
            if select is not None:
                got = self.select_config(s, self.grid_seed)
                lape = {**DESIGN_LAPE, **select.get("lape", {})}
                have = {k: getattr(got.lape, k) for k in lape}
                if got.method != select["method"] or got.layer_fraction != select["layer_fraction"]:
                    raise ValueError(
                        f"systems.{i}.select: {s.name} is method {select['method']}, layer_fraction "
                        f"{select['layer_fraction']} in the design; got {got.method}, {got.layer_fraction}"
                    )
                if have != lape:
                    raise ValueError(f"systems.{i}.select.lape: {s.name}'s design thresholds are {lape}")

    def system(self, name: str) -> ClaimSystem:
        for s in self.systems:
            if s.name == name:
                return s
        raise KeyError(f"no system {name!r} in the claim config")

    @property
    def trained(self) -> list[ClaimSystem]:
        return [s for s in self.systems if s.kind in TRAINED]

    @property
    def warmup_steps(self) -> int:
        return round(self.warmup_fraction * self.steps)

    def select_config(self, system: ClaimSystem, seed: int) -> SelectConfig:
        """The select section of ``system``'s mask for training seed ``seed``: the pipeline's, with the
        system's overrides; the random selector's seed is the training seed (docs/claim.md)."""
        if system.select is None:
            raise ValueError(f"system {system.name} trains no mask")
        base = self.pipeline.select
        o = system.select
        lape = LapeConfig.model_validate({**base.lape.model_dump(), **o.lape.model_dump(exclude_none=True)})
        update: dict[str, Any] = {"method": o.method, "lape": lape}
        if o.layer_fraction is not None:
            update["layer_fraction"] = o.layer_fraction
        if o.method == "random":
            update["seed"] = seed
        return SelectConfig.model_validate({**base.model_dump(), **update})

    def finetune_config(self, system: ClaimSystem, lr: float, seed: int) -> FinetuneConfig:
        """Shared settings, the system's method, the step budget and warm-up, ``lr`` and ``seed``."""
        update = {"method": system.kind, "steps": self.steps, "warmup_steps": self.warmup_steps,
                  "lr": lr, "seed": seed}  # fmt: skip
        return FinetuneConfig.model_validate({**self.pipeline.finetune.settings.model_dump(), **update})

    def val_evaluate(self) -> EvaluateConfig:
        """Image translation on the validation split only: what chooses the learning rates."""
        return self._evaluate("val", self.val_per_direction, cascades=False)

    def test_evaluate(self) -> EvaluateConfig:
        """Every system on the test split, with the retention measures."""
        return self._evaluate("test", self.test_per_direction, cascades=True)

    def _evaluate(self, split: str, n: int, cascades: bool) -> EvaluateConfig:
        kinds = {s.kind for s in self.systems}
        update = {
            "split": split,
            "max_samples_per_direction": n,
            "own_cascade": cascades and "base-read" in kinds,
            "cascade": cascades and "cascade" in kinds,
            "retention": cascades,
            "significance_samples": 0,  # the claim's own two-level bootstrap replaces it
        }
        return EvaluateConfig.model_validate({**self.pipeline.evaluate.model_dump(), **update})
