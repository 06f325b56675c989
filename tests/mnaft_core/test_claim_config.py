"""configs/claim.yaml is the pre-registered design; departures from it are errors naming the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mnaft_core.claim import DESIGN, ClaimConfig
from mnaft_core.config import ConfigError, load_model, parse_model

ROOT = Path(__file__).resolve().parents[2]
CLAIM = ROOT / "configs/claim.yaml"


def _raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CLAIM.read_text())
    return data


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_model(data, ClaimConfig, "claim.yaml")
    return str(info.value)


def test_the_committed_config_is_the_preregistered_design() -> None:
    cfg = load_model(CLAIM, ClaimConfig)
    assert cfg.preregistered and [s.name for s in cfg.systems] == list(DESIGN)
    assert (cfg.test_per_direction, cfg.val_per_direction, cfg.seeds) == (200, 64, [0, 1, 2, 3, 4])
    assert cfg.steps % 10 == 0 and 20 <= cfg.steps <= 80 and cfg.warmup_steps == round(0.1 * cfg.steps)
    assert cfg.pipeline.model.name_or_path == "embedded:organism-v2"
    half = cfg.select_config(cfg.system("lape-half"), 0)
    assert (half.lape.top_rate, half.lape.filter_rate, half.lape.activation_bar_ratio) == (
        0.005,
        0.975,
        0.975,
    )
    assert cfg.select_config(cfg.system("all-layers"), 0).layer_fraction == 1.0
    assert (
        cfg.select_config(cfg.system("random"), 3).seed == 3
    )  # the mask seed of random is the training seed
    assert cfg.select_config(cfg.system("mnaft"), 3).seed == cfg.pipeline.select.seed
    ft = cfg.finetune_config(cfg.system("lora"), 5e-4, 2)
    assert (ft.method, ft.steps, ft.lr, ft.seed, ft.batch_size) == ("lora", cfg.steps, 5e-4, 2, 16)
    val, test = cfg.val_evaluate(), cfg.test_evaluate()
    assert (val.split, val.max_samples_per_direction, val.cascade, val.retention) == ("val", 64, False, False)
    assert (test.split, test.max_samples_per_direction, test.cascade, test.retention) == (
        "test",
        200,
        True,
        True,
    )


def test_the_s80_run_differs_from_the_design_only_in_its_name_and_steps() -> None:
    """configs/claim-s80.yaml is the second experiment of docs/claim.md: S = 80, all else equal."""
    s80: dict[str, Any] = yaml.safe_load((ROOT / "configs/claim-s80.yaml").read_text())
    assert (s80.pop("name"), s80.pop("steps"), s80["pipeline"].pop("name")) == ("claim-s80", 80, "claim-s80")
    first = _raw()
    del first["name"], first["steps"], first["pipeline"]["name"]
    assert s80 == first
    assert load_model(ROOT / "configs/claim-s80.yaml", ClaimConfig).warmup_steps == 8


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["systems"].pop(), "systems: the pre-registered design has 13 systems"),
        (lambda d: d["systems"][3].update(lr_grid=[1e-4]), "systems.3.lr_grid"),
        (lambda d: d["systems"][11]["select"]["lape"].update(top_rate=0.01), "systems.11.select.lape"),
        (lambda d: d["systems"][10]["select"].update(layer_fraction=0.5), "systems.10.select"),
        (lambda d: d.update(steps=25), "steps: the design's S"),
        (lambda d: d.update(seeds=[0, 1, 2]), "seeds: the pre-registered design"),
        (lambda d: d.update(test_per_direction=100), "test_per_direction"),
        (lambda d: d["pipeline"]["profile"].update(gradient=False), "pipeline.profile.gradient"),
        (
            lambda d: d["pipeline"]["finetune"]["settings"].update(steps=80),
            "pipeline.finetune.settings.steps",
        ),
        (lambda d: d["pipeline"]["evaluate"].update(split="val"), "pipeline.evaluate.split"),
        (
            lambda d: d["pipeline"]["data"]["split"].update(max_eval_per_direction=64),
            "pipeline.data.split.max_eval_per_direction",
        ),
        (lambda d: d.update(baseline="nope"), "baseline"),
        (lambda d: d.update(decide_against=["random", "nope"]), "decide_against"),
        (lambda d: d["systems"][0].update(lr_grid=[1e-3]), "lr_grid: kind base is not trained"),
        (lambda d: d["systems"][5].pop("select"), "select: a mnaft-kind system needs its selection"),
        (lambda d: d["systems"][5]["select"].update(method="nope"), "systems.5.select.method"),
        (lambda d: d.update(bogus=1), "bogus: unknown key"),
    ],
)
def test_departures_are_errors_naming_the_field(change: Any, field: str) -> None:
    data = copy.deepcopy(_raw())
    change(data)
    assert field in _error(data)


def test_a_toy_run_may_take_a_subset_when_not_preregistered() -> None:
    data = copy.deepcopy(_raw())
    data.update(preregistered=False, steps=2, seeds=[0, 1], test_per_direction=4, val_per_direction=3,
                bootstrap_samples=200)  # fmt: skip
    data["systems"] = [s for s in data["systems"] if s["name"] in ("base", "mnaft", "random", "full")]
    cfg = parse_model(data, ClaimConfig)
    assert [s.name for s in cfg.trained] == ["full", "mnaft", "random"]
    assert not cfg.val_evaluate().own_cascade and not cfg.test_evaluate().own_cascade  # no base-read system
    data["preregistered"] = True
    assert "test_per_direction: the pre-registered design has 200" in _error(data)
