"""`mnaft claim` end to end through the CLI on a toy claim (tiny model, 2 directions, 2 seeds, 2 steps,
2-point grids, a subset of the systems: allowed only because the config says preregistered: false)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from docs import tables
from mnaft_core.models.tiny import save_tiny
from storage import ArtifactStore
from tests.flows.test_pipeline import PAIRS, _builds

MORE = [("Open", "Öffnen"), ("Exit", "Verlassen"), ("Find", "Finden"), ("Replace", "Ersetzen"),
        ("Select all", "Alles auswählen"), ("Import", "Importieren"), ("Export", "Exportieren"),
        ("Share", "Teilen"), ("Refresh", "Aktualisieren"), ("About", "Über")]  # fmt: skip


def _toy(root: Path) -> Path:
    tsv = root / "pairs.tsv"
    tsv.write_text("src_text\ttgt_text\n" + "".join(f"{a}\t{b}\n" for a, b in PAIRS + MORE))
    model = save_tiny("qwen2-vl", root / "tiny")
    grid = [1e-3, 5e-3]
    cfg: dict[str, Any] = {
        "name": "toy-claim",
        "preregistered": False,
        "steps": 2,
        "seeds": [0, 1],
        "test_per_direction": 3,
        "val_per_direction": 2,
        "bootstrap_samples": 200,
        "decide_against": ["random", "gradient"],
        "pipeline": {
            "name": "toy",
            "store": str(root / "store"),
            "model": {"name_or_path": str(model), "device": "cpu"},
            "data": {
                "directions": [{"src": "en", "tgt": "de"}, {"src": "de", "tgt": "en"}],
                "sources": [{"kind": "table", "path": str(tsv), "src_lang": "en", "tgt_lang": "de"}],
                "split": {"val_fraction": 0.2, "test_fraction": 0.25, "max_eval_per_direction": 3},
                "render": {"height": 32, "max_width": 128, "max_lines": 1, "font_size": [14, 16]},
            },
            "profile": {"max_samples_per_direction": 4, "batch_size": 4, "shard_size": 4, "gradient": True},
            "select": {"lape": {"top_rate": 0.05}, "specificity": {"permutations": 99}},
            "finetune": {"settings": {"batch_size": 4, "checkpoint_every": 1}},
            "evaluate": {"max_new_tokens": 4},
        },
        "systems": [
            {"name": "base", "kind": "base"},
            {"name": "mnaft", "kind": "mnaft", "select": {"method": "mnaft", "layer_fraction": 1.0},
             "lr_grid": grid},
            {"name": "random", "kind": "mnaft", "select": {"method": "random", "layer_fraction": 1.0},
             "lr_grid": grid},
            {"name": "gradient", "kind": "mnaft", "select": {"method": "gradient", "layer_fraction": 1.0},
             "lr_grid": grid},
        ],
    }  # fmt: skip
    path = root / "claim.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_claim_runs_through_the_cli_resumes_and_feeds_its_docs_table(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli import app

    config = _toy(tmp_path)
    counts = _builds(monkeypatch)
    res = CliRunner().invoke(app, ["claim", "-c", str(config)])
    assert res.exit_code == 0, res.output
    # one select per distinct selection: mnaft and gradient once, random once per seed (its mask seed)
    assert counts == Counter(data=1, profile=1, select=4, finetune=3 * 2 + 3, evaluate=2, claim=1)
    assert "decision:" in res.output and "Holm p" in res.output
    st = ArtifactStore(str(tmp_path / "store"))
    [claim] = st.manifests("claim")
    report = json.loads(st.open("claim", claim.key).read_bytes("claim.json"))
    assert report["kind"] == "claim" and report["preregistered"] is False
    assert [s["system"] for s in report["scores"]] == ["base", "mnaft", "random", "gradient"]
    assert {c["system"] for c in report["comparisons"]} == {"base", "random", "gradient"}
    for c in report["comparisons"]:
        assert c["p_holm"] >= c["p"] and c["ci_low"] <= c["delta"] <= c["ci_high"] and c["mdd"] >= 0
    assert report["strings"] == {"de-en": 3, "en-de": 3} and report["seeds"] == [0, 1]
    assert set(report["chosen_lr"]) == {"mnaft", "random", "gradient"}
    assert report["chosen_lr"]["mnaft"] in (1e-3, 5e-3) and len(report["grid"]) == 6
    assert {r["system"] for r in report["retention"]} == {"base", "mnaft", "random", "gradient"}
    assert report["decision"]["outcome"] in {"supported", "supported at a retention cost", "contradicted",
                                             "inconclusive", "supported and contradicted"}  # fmt: skip
    assert report["masks"]["gradient (seeds 0, 1)"]["method"] == "gradient"  # one mask for both seeds
    assert {"random (seed 0)", "random (seed 1)"} <= set(report["masks"])  # its mask seed = training seed
    assert report["trainable_params"]["mnaft"] > 0
    md = st.open("claim", claim.key).read_bytes("claim.md").decode()
    assert "Not the pre-registered experiment" in md and "## Retention against the base" in md

    # a rerun builds nothing: every stage is found in the store
    counts.clear()
    again = CliRunner().invoke(app, ["claim", "-c", str(config)])
    assert again.exit_code == 0, again.output
    assert sum(counts.values()) == 0

    # docs.tables' claim kind renders the README table from the report file
    result = tmp_path / "claim-toy.json"
    tables.record_claim(claim.key, str(tmp_path / "store"), "2-core test machine", result)
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    text = tables.render(f"<!-- table: claim {result.name} -->\nold\n<!-- /table -->\n")
    assert "| mnaft |" in text and "NOT the pre-registered experiment" in text and "Holm" in text
    assert "old" not in text
