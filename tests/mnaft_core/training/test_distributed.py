"""Data-parallel fine-tuning under torchrun: two CPU processes on gloo train one model in lockstep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mnaft_core.data.build import build_dataset, write_dataset
from mnaft_core.data.config import DataConfig
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.tiny import save_tiny
from mnaft_core.training.config import FinetuneConfig
from mnaft_core.training.launch import METRICS, LaunchSpec, run_torchrun

WORDS = [
    "Open",
    "Save",
    "Close",
    "Help",
    "Print",
    "Cancel",
    "Search",
    "Quit",
    "Copy",
    "Paste",
    "Edit",
    "View",
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ddp")
    tsv = root / "pairs.tsv"
    tsv.write_text("src_text\ttgt_text\n" + "".join(f"{w}\tdas {w[::-1].lower()}\n" for w in WORDS))
    data = DataConfig.model_validate(
        {
            "directions": [{"src": "en", "tgt": "de"}],
            "sources": [{"kind": "table", "path": str(tsv), "src_lang": "en", "tgt_lang": "de"}],
            "split": {"val_fraction": 0.0, "test_fraction": 0.0},
            "render": {"height": 32, "max_width": 96, "max_lines": 1, "font_size": [14, 16]},
        }
    )
    write_dataset(build_dataset(data, progress=False), root / "data")
    return save_tiny("qwen2-vl", root / "tiny"), root / "data"


def _launch(setup: tuple[Path, Path], tmp: Path, processes: int, method: str) -> Path:
    model, data = setup
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = FinetuneConfig(method=method, steps=3, batch_size=4, warmup_steps=0, lr=1e-2, checkpoint_every=2,
                         processes=processes)  # type: ignore[arg-type]  # fmt: skip
    spec = LaunchSpec(ModelConfig(name_or_path=str(model), device="cpu").model_dump(mode="json"),
                      cfg.model_dump(mode="json"), str(data), str(tmp / "run"), str(tmp / "out"))  # fmt: skip
    progress: list[tuple[int, int]] = []
    with (tmp / "torchrun.log").open("w") as log:
        code = run_torchrun(spec.write(tmp / "spec.json"), processes, output=log, poll_s=0.2,
                            on_progress=lambda done, total: progress.append((done, total)))  # fmt: skip
    assert code == 0, (tmp / "torchrun.log").read_text()[-6000:]
    # the ranks report through rank 0's metrics log: steps only grow, and the last is the end
    assert progress and progress[-1] == (3, 3) and progress == sorted(set(progress))
    return tmp / "out"


@pytest.mark.slow
def test_two_gloo_processes_train_in_lockstep(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """Full fine-tuning through the launcher: FSDP2 over 2 processes, gathered for the export. (LoRA
    through torchrun: tests/flows/test_finetune_torchrun.py and test_multinode.py; every method's
    exact equivalence: test_parallel.py.)"""
    method = "full"
    two = _launch(setup, tmp_path / "two", 2, method)  # rank 0 checks that both ranks ended equal
    metrics = json.loads((two / METRICS).read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 3 and metrics["sharding"] == "fsdp"
    assert (two / "model" / "config.json").exists()
    log = [json.loads(ln) for ln in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]  # one log line per step: rank 0 writes alone
    one = _launch(setup, tmp_path / "one", 1, method)
    a, b = (
        load_file(str(two / "model" / "model.safetensors")),
        load_file(str(one / "model" / "model.safetensors")),
    )
    base = load_file(str(setup[0] / "model.safetensors"))
    changed = [k for k in base if not torch.equal(base[k], b[k])]
    assert changed  # training did something
    # each rank's half of a batch weighted by its share of the target tokens: the whole batch's gradient
    diff = sum(float((a[k].float() - b[k].float()).norm() ** 2) for k in changed) ** 0.5
    update = sum(float((b[k].float() - base[k].float()).norm() ** 2) for k in changed) ** 0.5
    assert diff < 1e-4 * update, (diff, update)  # measured 4e-6 x update (float32 summation order)
