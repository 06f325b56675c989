"""Every supported family, as a new user meets it: a look-alike of the hub's smallest public checkpoint
goes through profile -> select -> finetune (mnaft and LoRA) -> evaluate -> translate, and the merged
checkpoint reloads with plain transformers, generating the same tokens as mnaft's own loader.

The default suite runs ``DEFAULT``; the others are marked slow and skipped unless ``MNAFT_FAMILIES=all``
(CI sets it when its time budget allows). ``MNAFT_FAMILY_RESULTS=FILE`` records, per family,
which stages passed and how long each took: the README's family table is generated from that file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText
from typer.testing import CliRunner

from mnaft_core.data.config import DataConfig
from mnaft_core.evaluation.systems import EvaluateConfig
from mnaft_core.models.config import ModelConfig
from mnaft_core.profiling.runner import ProfileConfig
from mnaft_core.selection.lape import LapeConfig
from mnaft_core.selection.select import SelectConfig
from mnaft_core.training.config import FinetuneConfig
from mnaft_core.training.export import apply_neuron_delta
from mnaft_core.training.finetune import DELTA_FILE, MODEL_DIR
from storage import ArtifactStore
from tests.families.lookalike import FAMILIES, save_lookalike
from tests.families.reload import draw_image, plain, project

DEFAULT = ("qwen2-vl", "llava")
NAME = "test_family_runs_every_stage_and_reloads_in_plain_transformers"
# their stock processors load a video processor: torchvision, in plain transformers
NEEDS_VIDEO = {"internvl", "llava-onevision"}
PAIRS = [
    ("Open file", "Datei öffnen"),
    ("Save", "Speichern"),
    ("Close window", "Fenster schließen"),
    ("Help", "Hilfe"),
    ("New folder", "Neuer Ordner"),
    ("Print", "Drucken"),
    ("Cancel", "Abbrechen"),
    ("Search", "Suchen"),
    ("Settings", "Einstellungen"),
    ("Quit", "Beenden"),
    ("Copy", "Kopieren"),
    ("Paste", "Einfügen"),
    ("Delete", "Löschen"),
    ("Rename", "Umbenennen"),
]


def _param(family: str) -> Any:
    if family in DEFAULT:
        return pytest.param(family, id=family)
    marks = [pytest.mark.slow]
    if os.environ.get("MNAFT_FAMILIES") != "all":
        marks.append(pytest.mark.skip(reason="slow family: set MNAFT_FAMILIES=all to run it"))
    return pytest.param(family, marks=marks, id=family)


@pytest.fixture(scope="session")
def family_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One store and one dataset for every family; look-alike folders are built on first use."""
    from tasks.data import build_data

    root = tmp_path_factory.mktemp("families")
    tsv = root / "pairs.tsv"
    tsv.write_text("src_text\ttgt_text\n" + "".join(f"{a}\t{b}\n" for a, b in PAIRS))
    data = DataConfig.model_validate(
        {
            "directions": [{"src": "en", "tgt": "de"}, {"src": "de", "tgt": "en"}],
            "sources": [{"kind": "table", "path": str(tsv), "src_lang": "en", "tgt_lang": "de"}],
            "split": {"val_fraction": 0.1, "test_fraction": 0.2},
            "render": {"height": 32, "max_width": 128, "max_lines": 1, "font_size": [14, 16]},
        }
    )
    store = str(root / "store")
    state: dict[str, Any] = {"root": root, "store": store, "data": build_data(data, store), "results": {}}
    yield state
    out = os.environ.get("MNAFT_FAMILY_RESULTS")
    if out and state["results"]:
        path = Path(out)
        old = json.loads(path.read_text()) if path.is_file() else {}
        old["families"] = {**old.get("families", {}), **state["results"]}
        path.write_text(json.dumps(old, indent=2, ensure_ascii=False) + "\n")


@pytest.mark.parametrize("family", [_param(f) for f in FAMILIES])
def test_family_runs_every_stage_and_reloads_in_plain_transformers(
    family: str, family_root: dict[str, Any]
) -> None:
    from flows.cli import app
    from tasks.evaluate import build_evaluate
    from tasks.finetune import build_finetune
    from tasks.profile import build_profile
    from tasks.select import build_select

    store, data_key, root = family_root["store"], family_root["data"], family_root["root"]
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        seconds[stage] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    folder = save_lookalike(family, root / family)
    model = ModelConfig(name_or_path=str(folder), device="cpu")
    lap("build")
    batch = FAMILIES[family].batch
    profile = build_profile(
        model,
        ProfileConfig(max_samples_per_direction=4, batch_size=batch, shard_size=4),
        data_key,
        store,
        progress=False,
    )
    lap("profile")
    mask = build_select(SelectConfig(lape=LapeConfig(top_rate=0.05), layer_fraction=1.0), profile, store)
    lap("select")
    tune = FinetuneConfig(steps=2, batch_size=batch, warmup_steps=0, checkpoint_every=2)
    mnaft = build_finetune(model, tune, data_key, mask, store, max_train=8)
    lora_cfg: dict[str, Any] = {"method": "lora"}
    if FAMILIES[family].lora_targets:
        lora_cfg["lora"] = tune.lora.model_copy(update={"target_modules": FAMILIES[family].lora_targets})
    lora = build_finetune(model, tune.model_copy(update=lora_cfg), data_key, None, store, max_train=8)
    lap("finetune")
    evaluate = EvaluateConfig(
        max_samples_per_direction=2,
        max_new_tokens=3,
        batch_size=batch,
        cascade=False,
        own_cascade=False,
        significance_samples=0,
    )
    report = build_evaluate(model, evaluate, data_key, {"mnaft": {0: mnaft}, "lora": {0: lora}}, store)
    st = ArtifactStore(store)
    outputs = pl.read_parquet(st.open("evaluate", report).open("outputs.parquet"))
    assert {"base", "mnaft", "lora"} <= set(outputs["system"]), family
    lap("evaluate")
    image = draw_image(root / f"{family}.png")
    cli = CliRunner().invoke(
        app,
        [
            "translate",
            str(image),
            "--to",
            "de",
            "--model",
            mnaft,
            "--store",
            store,
            "--json",
            "--max-new-tokens",
            "3",
            "--device",
            "cpu",
        ],
    )
    assert cli.exit_code == 0, cli.output
    lines = [json.loads(x) for x in cli.stdout.splitlines() if x.startswith("{")]
    assert [x["image"] for x in lines] == [str(image)] and isinstance(lines[0]["translation"], str), (
        cli.output
    )
    lap("translate")

    merged = st.open("finetune", mnaft).local_path(MODEL_DIR)
    assert {t.dtype for t in load_file(merged / "model.safetensors").values()} == {torch.bfloat16}
    assert (merged / "preprocessor_config.json").is_file() and (merged / "README.md").is_file()
    assert mask in (merged / "README.md").read_text()
    tok_cfg = json.loads((merged / "tokenizer_config.json").read_text())
    assert not {"local_files_only", "is_local"} & set(tok_cfg)
    # the neuron delta alone turns the untouched bf16 base into the merged checkpoint, bit for bit
    base = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.bfloat16)
    apply_neuron_delta(base, st.open("finetune", mnaft).local_path(DELTA_FILE))
    saved = AutoModelForImageTextToText.from_pretrained(merged, dtype=torch.bfloat16).state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in base.state_dict().items()), family
    torchvision = importlib.util.find_spec("torchvision") is not None
    if family in NEEDS_VIDEO and not torchvision:
        with pytest.raises(AssertionError, match=r"(?i)torchvision"):
            plain(merged, image)
        reload = "model; processor needs torchvision"
    else:
        report_plain = plain(merged, image)
        assert report_plain["modules"] == [], "the plain reload imported mnaft"
        assert report_plain["tokens"] == project(merged, image), family
        reload = "yes"
    lap("plain reload")
    family_root["results"][family] = {
        "hub_id": FAMILIES[family].hub_id,
        "seconds": seconds,
        "stages": ["profile", "select", "finetune", "evaluate", "translate"],
        "plain_reload": reload,
        "default": family in DEFAULT,
        "test": f"tests/families/test_families.py::{NAME}[{family}]",
    }
