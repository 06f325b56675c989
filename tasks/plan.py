"""The key each stage has for a pipeline config, and how a stage run alone finds its inputs by them.

The end-to-end flow and every stage flow (so the UI and the CLI) compute upstream keys with the same
functions, so a stage run alone opens exactly the artifact the pipeline made for the config in force,
never "the newest" one. An explicit key (or unique prefix) still wins, and is checked to fit: a mask
selected for another model, or by another selector than the system asks for, is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mnaft_core.config import FinetuneSuite, PipelineConfig, SystemSpec
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import model_identity
from mnaft_core.selection.select import SelectConfig
from storage import ArtifactNotFoundError, ArtifactStore, Manifest, StoreError
from tasks.data import data_key
from tasks.evaluate import evaluate_key
from tasks.finetune import finetune_key
from tasks.profile import profile_key
from tasks.select import select_key

Checkpoints = dict[str, dict[int, str]]  # system -> seed -> finetune key


class InputMismatchError(StoreError, ValueError):
    """An explicitly given upstream artifact that does not fit the stage run (another model, selector)."""


class MissingInputError(ArtifactNotFoundError):
    """The artifact the config asks for is not in the store; the message says which stage to run."""


def selector_config(select: SelectConfig, method: str) -> SelectConfig:
    """The select section for one selector: the configured selection with its method replaced."""
    return select.model_copy(update={"method": method})


def mask_selectors(suite: FinetuneSuite) -> list[str]:
    """The selectors whose masks the suite's systems train on, sorted."""
    return sorted({s.mask for s in suite.systems if s.mask is not None})


@dataclass(frozen=True)
class Plan:
    """Every key the pipeline computes for ``config``, computed without running anything."""

    config: PipelineConfig

    def data(self) -> str:
        return data_key(self.config.data)

    def profile(self, data: str | None = None) -> str:
        return profile_key(self.config.model, self.config.profile, data or self.data())

    def mask(self, selector: str, profile: str | None = None) -> str:
        return select_key(selector_config(self.config.select, selector), profile or self.profile())

    def finetune(
        self, system: SystemSpec, seed: int, data: str | None = None, mask: str | None = None
    ) -> str:
        suite = self.config.finetune
        if system.mask is not None and mask is None:
            mask = self.mask(system.mask, self.profile(data))
        return finetune_key(self.config.model, suite.config_for(system, seed), data or self.data(),
                            mask if system.mask is not None else None,
                            max_train=suite.max_train_per_direction)  # fmt: skip

    def checkpoints(self) -> Checkpoints:
        suite = self.config.finetune
        return {s.name: {seed: self.finetune(s, seed) for seed in suite.seeds} for s in suite.systems}

    def evaluate(self, checkpoints: Mapping[str, Mapping[int, str]] | None = None) -> str:
        ck = self.checkpoints() if checkpoints is None else checkpoints
        return evaluate_key(self.config.model, self.config.evaluate, self.data(), ck)

    def keys(self) -> dict[str, str]:
        """stage -> key, named as the end-to-end flow returns them."""
        ck = self.checkpoints()
        return {
            "data": self.data(),
            "profile": self.profile(),
            **{f"select:{m}": self.mask(m) for m in mask_selectors(self.config.finetune)},
            **{f"finetune:{s}:{seed}": k for s, seeds in ck.items() for seed, k in seeds.items()},
            "evaluate": self.evaluate(ck),
        }


def _describe_model(model: ModelConfig) -> str:
    return f"model {model.name_or_path}"


def _require(store: ArtifactStore, stage: str, key: str, what: str, run: str) -> str:
    if not store.has(stage, key):
        raise MissingInputError(
            f"{store.url}: no {stage} artifact for {what} (key {key}): run {run} first, or pass the "
            f"key of the {stage} artifact to use"
        )
    return key


def _given(store: ArtifactStore, stage: str, key: str, what: str) -> Manifest:
    try:
        return store.resolve(key, stage).manifest
    except ArtifactNotFoundError as err:
        raise ArtifactNotFoundError(f"{what}: {err}") from err


def resolve_data(config: PipelineConfig, given: str | None = None) -> str:
    """The dataset artifact: ``given`` (key or prefix) or the one the config's data section makes."""
    st = ArtifactStore(config.store)
    if given:
        return _given(st, "data", given, "data key").key
    return _require(st, "data", Plan(config).data(), "the config's data section",
                    "the data stage (`mnaft data`)")  # fmt: skip


def resolve_profile(config: PipelineConfig, given: str | None = None, data: str | None = None) -> str:
    """The profile artifact: ``given``, or the one of the config's model and profile section on the
    config's dataset (``data`` overrides that dataset)."""
    st = ArtifactStore(config.store)
    if given:
        return _given(st, "profile", given, "profile key").key
    data = data or resolve_data(config)
    what = f"{_describe_model(config.model)} on data {data} with the config's profile section"
    return _require(st, "profile", Plan(config).profile(data), what, "the profile stage (`mnaft profile`)")


def check_mask(config: PipelineConfig, manifest: Manifest, selector: str) -> None:
    """Refuse a mask another selector made, or one selected on another model's profile."""
    method = (manifest.params or {}).get("method")
    if method != selector:
        raise InputMismatchError(
            f"mask {manifest.key} was made by selector {method!r}, the system trains on a {selector!r} "
            "mask: pass a mask of that selector, or none to use the config's"
        )
    st = ArtifactStore(config.store)
    profile = manifest.inputs.get("profile")
    if profile is None or not st.has("profile", profile):
        return  # the chain is gone from the store: training still checks the mask's model fingerprint
    made_on = st.open("profile", profile).manifest.inputs.get("model")
    if made_on != model_identity(config.model):
        raise InputMismatchError(
            f"mask {manifest.key} was selected on a profile of another model ({str(made_on)[:16]}), not "
            f"of {config.model.name_or_path}: profile and select this model first"
        )


def resolve_mask(
    config: PipelineConfig, selector: str, given: str | None = None, data: str | None = None
) -> str:
    """The mask of ``selector`` for the config's model: ``given`` (checked to fit), or the one the
    pipeline selects on the profile of the config's dataset (``data`` overrides that dataset)."""
    st = ArtifactStore(config.store)
    if given:
        manifest = _given(st, "select", given, "mask key")
        check_mask(config, manifest, selector)
        return manifest.key
    profile = resolve_profile(config, data=data)
    what = f"selector {selector!r} on profile {profile} with the config's select section"
    return _require(st, "select", Plan(config).mask(selector, profile), what,
                    f"the select stage (`mnaft select --method {selector}`)")  # fmt: skip


def check_checkpoint(config: PipelineConfig, manifest: Manifest) -> None:
    """Refuse a checkpoint fine-tuned from another base model than the config's."""
    if manifest.inputs.get("model") != model_identity(config.model):
        raise InputMismatchError(
            f"finetune {manifest.key} was trained from another model, not {config.model.name_or_path}: "
            "evaluate it with that model's config"
        )


def resolve_system_mask(
    config: PipelineConfig, system: SystemSpec, given: str | None, data: str
) -> str | None:
    """The mask a system trains on (None for full and LoRA, which refuse one)."""
    if system.mask is None:
        if given:
            raise InputMismatchError(
                f"system {system.name!r} trains with method {system.method}, which takes no mask"
            )
        return None
    return resolve_mask(config, system.mask, given, data)


def resolve_checkpoints(
    config: PipelineConfig, given: Mapping[str, Sequence[str]] | None = None
) -> Checkpoints:
    """system -> seed -> finetune key: the given keys labelled by the seed each run recorded, or every
    system and seed of the config's suite (each must exist)."""
    st = ArtifactStore(config.store)
    out: Checkpoints = {}
    if given is None:
        plan, suite = Plan(config), config.finetune
        data = resolve_data(config)
        for spec in suite.systems:
            for seed in suite.seeds:
                key = plan.finetune(spec, seed, data)
                what = f"system {spec.name!r} seed {seed} with the config's finetune section"
                run = f"the finetune stage (`mnaft finetune --method {spec.name} --seed {seed}`)"
                out.setdefault(spec.name, {})[seed] = _require(st, "finetune", key, what, run)
        return out
    for name, keys in sorted(given.items()):
        for k in keys:
            manifest = _given(st, "finetune", k, f"checkpoint of {name}")
            check_checkpoint(config, manifest)
            recorded = (manifest.params or {}).get("seed")
            if not isinstance(recorded, int):
                raise InputMismatchError(f"finetune {manifest.key} records no seed in its parameters")
            seeds = out.setdefault(name, {})
            if recorded in seeds and seeds[recorded] != manifest.key:
                raise InputMismatchError(
                    f"system {name!r}: finetune {seeds[recorded]} and {manifest.key} both ran with "
                    f"seed {recorded}"
                )
            seeds[recorded] = manifest.key
    return out
