"""The finetune stage with ``processes: 2``: torchrun under the stage builder, progress followed live."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mnaft_core.models.config import ModelConfig
from mnaft_core.training.config import FinetuneConfig
from storage import ArtifactStore, content_key
from tasks.finetune import build_finetune
from tests.mnaft_core.training.test_distributed import setup

__all__ = ["setup"]  # the module fixture: a tiny Qwen2-VL and a rendered dataset


@pytest.mark.slow
def test_the_finetune_stage_runs_torchrun_and_reports_its_progress(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    """``finetune.settings.processes: 2`` through the stage builder: published artifact, live progress."""
    model, data = setup
    store = ArtifactStore(str(tmp_path / "store"))
    data_key = content_key("data", {}, {"test": "ddp"}, "v")
    with store.writer("data", data_key, params={"test": "ddp"}) as w:
        shutil.copytree(data, w.dir, dirs_exist_ok=True)
    cfg = FinetuneConfig(method="lora", steps=3, batch_size=4, warmup_steps=0, lr=1e-2, checkpoint_every=2,
                         processes=2)  # fmt: skip
    progress: list[tuple[int, int]] = []
    key = build_finetune(ModelConfig(name_or_path=str(model), device="cpu"), cfg, data_key, None,
                         store.root, on_progress=lambda d, t: progress.append((d, t)))  # fmt: skip
    art = store.open("finetune", key)
    assert art.manifest.metrics["processes"] == 2 and art.manifest.metrics["steps"] == 3
    assert progress and progress[-1] == (3, 3)
