"""`make demo` reduced: configs/demo.yaml on the committed organism, one seed, a few steps, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mnaft_core.config import load_config
from mnaft_core.models.loading import ASSETS
from storage import ArtifactStore

ROOT = Path(__file__).resolve().parents[2]
REDUCED = {
    "data.split.max_train_per_direction": 24,
    "data.split.max_eval_per_direction": 6,
    "profile.max_samples_per_direction": 8,
    "profile.shard_size": 8,
    "finetune.seeds": [0],
    "finetune.settings.steps": 3,
    "finetune.settings.warmup_steps": 1,
    "finetune.settings.checkpoint_every": 2,
    "finetune.settings.batch_size": 4,
    "evaluate.max_samples_per_direction": 4,
    "evaluate.significance_samples": 50,
}


@pytest.mark.skipif(not (ASSETS / "organism-v2" / "config.json").is_file(), reason="organism v2 not built")
@pytest.mark.usefixtures("prefect_harness")
def test_demo_flow_end_to_end_reduced(tmp_path: Path) -> None:
    from flows.pipeline import mnaft_flow

    cfg = load_config(ROOT / "configs/demo.yaml", {**REDUCED, "store": str(tmp_path / "store")})
    keys = mnaft_flow(cfg)
    report = ArtifactStore(cfg.store).open("evaluate", keys["evaluate"])
    data = json.loads(report.read_bytes("report.json"))
    systems = {row["system"] for row in data["aggregate"]}
    assert {"base", "ocr+mt", "mnaft", "full", "lora", "random"} <= systems
    assert {d.name for d in cfg.data.directions} == {row["direction"] for row in data["aggregate"]}
    assert "## Retention of pre-trained abilities" in report.read_bytes("report.md").decode()
