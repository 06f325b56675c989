"""One tiny pipeline (tiny Qwen2-VL, 24 table pairs), built once per session through the stage builders.

The fault tests copy its store and break the copy, so every test starts from complete, verified
artifacts of every kind, and the session's reference artifacts give the sha256s a rerun must match.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from mnaft_core.data.config import DataConfig
from mnaft_core.evaluation.systems import EvaluateConfig
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.tiny import save_tiny
from mnaft_core.profiling.runner import ProfileConfig
from mnaft_core.selection.lape import LapeConfig
from mnaft_core.selection.select import SelectConfig
from mnaft_core.training.config import FinetuneConfig
from storage import ArtifactStore
from tests.flows.test_pipeline import PAIRS

STAGES = ("data", "profile", "select", "finetune", "evaluate")


@dataclass(frozen=True)
class Tiny:
    root: Path
    store: str
    model: ModelConfig
    data: DataConfig
    profile: ProfileConfig
    select: SelectConfig
    finetune: FinetuneConfig
    evaluate: EvaluateConfig
    keys: dict[str, str]

    def checkpoints(self) -> dict[str, dict[int, str]]:
        return {"mnaft": {0: self.keys["finetune"]}}

    def copy_store(self, dest: Path, keep: tuple[str, ...] = STAGES) -> ArtifactStore:
        """A copy of the store holding only the artifacts of ``keep``."""
        shutil.copytree(self.store, dest, ignore=shutil.ignore_patterns(".staging", ".locks"))
        st = ArtifactStore(dest)
        for stage in STAGES:
            if stage not in keep:
                st.delete(stage, self.keys[stage])
        return st

    def build(self, stage: str, store: str) -> str:
        """Run ``stage``'s builder (no Prefect) on this pipeline's upstream keys."""
        from tasks.data import build_data
        from tasks.evaluate import build_evaluate
        from tasks.finetune import build_finetune
        from tasks.profile import build_profile
        from tasks.select import build_select

        k = self.keys
        if stage == "data":
            return build_data(self.data, store)
        if stage == "profile":
            return build_profile(self.model, self.profile, k["data"], store, progress=False)
        if stage == "select":
            return build_select(self.select, k["profile"], store)
        if stage == "finetune":
            return build_finetune(self.model, self.finetune, k["data"], k["select"], store)
        return build_evaluate(self.model, self.evaluate, k["data"], self.checkpoints(), store)


def sha256s(store: ArtifactStore, stage: str, key: str) -> dict[str, str]:
    return {f.path: f.sha256 for f in store.verify(stage, key).manifest.files}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    root = tmp_path_factory.mktemp("reliability")
    tsv = root / "pairs.tsv"
    tsv.write_text("src_text\ttgt_text\n" + "".join(f"{a}\t{b}\n" for a, b in PAIRS))
    model = ModelConfig(name_or_path=str(save_tiny("qwen2-vl", root / "tiny")), device="cpu")
    data = DataConfig.model_validate(
        {
            "directions": [{"src": "en", "tgt": "de"}, {"src": "de", "tgt": "en"}],
            "sources": [{"kind": "table", "path": str(tsv), "src_lang": "en", "tgt_lang": "de"}],
            "split": {"val_fraction": 0.1, "test_fraction": 0.2},
            "render": {"height": 32, "max_width": 128, "max_lines": 1, "font_size": [14, 16]},
        }
    )
    t = Tiny(
        root=root,
        store=str(root / "store"),
        model=model,
        data=data,
        profile=ProfileConfig(max_samples_per_direction=8, batch_size=4, shard_size=4, sample_means=True),
        select=SelectConfig(lape=LapeConfig(top_rate=0.05), layer_fraction=1.0),
        finetune=FinetuneConfig(steps=2, batch_size=4, warmup_steps=0, checkpoint_every=1),
        evaluate=EvaluateConfig(
            max_samples_per_direction=2, max_new_tokens=3, cascade=False, significance_samples=10
        ),
        keys={},
    )
    for stage in STAGES:
        t.keys[stage] = t.build(stage, t.store)
    return t


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-out", default=None, help="write the reliability cases tried to this JSON file"
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    out = session.config.getoption("--reliability-out", default=None)
    if out:
        import json

        from tests.reliability.cases import as_json

        Path(out).write_text(json.dumps(as_json(), indent=1, ensure_ascii=False) + "\n")
