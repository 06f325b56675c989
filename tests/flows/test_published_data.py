"""`mnaft data` on MIT-10M, OCRMT30K and a manifest in their own layouts (zh/ja directions), then one
fine-tune and an evaluation on top: BLEU tokenised by target language, as the signatures say."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from mnaft_core.config import load_config
from mnaft_core.data.config import DataConfig
from mnaft_core.models.tiny import save_tiny
from storage import ArtifactStore
from tests import published_layouts as layouts

DIRECTIONS = [{"src": "en", "tgt": "zh"}, {"src": "en", "tgt": "ja"}, {"src": "zh", "tgt": "en"},
              {"src": "ja", "tgt": "en"}]  # fmt: skip


def test_data_cli_then_finetune_and_evaluate_on_published_layouts(
    prefect_harness: None, tmp_path: Path
) -> None:
    from flows.stages import evaluate_flow, finetune_flow

    mit = layouts.mit10m(tmp_path / "mit10m")
    ocr = layouts.ocrmt30k(tmp_path / "ocrmt30k")
    manifest = layouts.manifest(tmp_path / "other", "jsonl")
    store = tmp_path / "store"
    cfg_file = tmp_path / "published.yaml"
    cfg_file.write_text(
        yaml.safe_dump(
            {
                "name": "published",
                "store": str(store),
                "model": {"name_or_path": str(save_tiny("qwen2-vl", tmp_path / "tiny")), "device": "cpu"},
                "data": {
                    "directions": DIRECTIONS,
                    "sources": [
                        {"kind": "mit10m", "path": str(mit), "val_fraction": 0.3},
                        {"kind": "ocrmt30k", "path": str(ocr)},
                        {"kind": "manifest", "path": str(manifest), "columns": layouts.MANIFEST_COLUMNS},
                    ],
                },
                "finetune": {
                    "settings": {"steps": 2, "batch_size": 4, "warmup_steps": 0, "checkpoint_every": 2},
                    "systems": [{"name": "lora", "method": "lora"}],
                    "seeds": [0],
                },
                "evaluate": {
                    "max_samples_per_direction": 2,
                    "max_new_tokens": 4,
                    "cascade": False,
                    "own_cascade": False,
                    "significance_samples": 10,
                },
            },
            allow_unicode=True,
        )
    )
    res = CliRunner().invoke(app, ["data", "--config", str(cfg_file), "--parts", "2"])
    assert res.exit_code == 0, res.output
    key = re.search(r"data: (\w+)", res.output).group(1)  # type: ignore[union-attr]
    art = ArtifactStore(str(store)).open("data", key)
    card = json.loads(art.read_bytes("card.json"))
    assert set(card["origins"]) == {"mit10m", "ocrmt30k", "manifest"}
    assert all(all(n > 0 for n in c.values()) for c in card["counts"].values()), card["counts"]
    assert {"Hans", "Jpan", "Latn"} <= set(card["scripts"])
    assert not any(p.path.startswith("parts/") for p in art.manifest.files)
    again = CliRunner().invoke(app, ["data", "--config", str(cfg_file)])  # one part: the same artifact
    assert again.exit_code == 0 and f"data: {key}" in again.output

    cfg = load_config(cfg_file)  # the stages find the dataset this config makes: the one built above
    ft = finetune_flow(cfg, system="lora", seed=0)
    ev = evaluate_flow(cfg, {"lora": [ft]}, data_key=key)
    report = json.loads(ArtifactStore(str(store)).open("evaluate", ev).read_bytes("report.json"))
    assert {r["direction"] for r in report["scores"]} == {"en-zh", "en-ja", "zh-en", "ja-en"}
    toks = {re.search(r"tok:([\w-]+)", s).group(1) for s in report["signatures"]["bleu"]}  # type: ignore[union-attr]
    assert toks == {"zh", "ja-mecab-0", "13a"}
    assert all("nw:2" in s for s in report["signatures"]["chrf"])  # chrF++


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_failed_import_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    from mnaft_core.data.config import DataConfig
    from mnaft_core.data.types import BadInputError
    from tasks.data import build_data, data_part

    store = tmp_path / "store"
    good = layouts.mit10m(tmp_path / "good")
    cfg = {
        "directions": DIRECTIONS[2:],
        "sources": [{"kind": "mit10m", "path": str(good), "val_fraction": 0.3}],
    }
    key = build_data(DataConfig.model_validate(cfg), str(store))
    before = _snapshot(store)
    bad = layouts.mit10m(tmp_path / "bad", broken=True)
    bad_cfg = DataConfig.model_validate({**cfg, "sources": [{**cfg["sources"][0], "path": str(bad)}]})  # type: ignore[dict-item]
    with pytest.raises(BadInputError, match=r"ZH\.jsonl:\d+: image 'zh/bad_missing_image\.jpg' not found"):
        build_data(bad_cfg, str(store))
    with pytest.raises(BadInputError):
        data_part(bad_cfg, str(store), 0, 2)
    with pytest.raises(BadInputError):
        build_data(bad_cfg, str(store), parts=2)
    after = {k: v for k, v in _snapshot(store).items() if not k.startswith(".staging/")}
    assert after == before  # the stored artifact is untouched, byte for byte
    assert ArtifactStore(str(store)).open("data", key).manifest.key == key
    assert not [p for p in (store / ".staging").iterdir() if not p.name.endswith("-resumable")]


def test_data_in_parts_runs_part_flows_and_publishes_what_one_part_does(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mnaft data --parts 3` as a user runs it: three `data-part` flow runs write the rows (the data
    flow itself builds none), and the published artifact has the files, byte for byte, of one part."""
    from prefect import runtime
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    import tasks.data
    from tasks.data import data_part

    mit = layouts.mit10m(tmp_path / "mit10m")
    data = {"directions": DIRECTIONS, "sources": [{"kind": "mit10m", "path": str(mit), "val_fraction": 0.3}],
            "split": {"max_train_per_direction": 7, "max_eval_per_direction": 2}}  # fmt: skip
    built: list[tuple[int, str]] = []
    real = tasks.data.build_part

    def build_part(cfg: Any, part: int, parts: int, folder: Path, progress: bool = True) -> Path:
        built.append((part, str(runtime.flow_run.flow_name)))
        return real(cfg, part, parts, folder, progress)

    monkeypatch.setattr(tasks.data, "build_part", build_part)
    published = {}
    for parts in (3, 1):
        store = tmp_path / f"store-{parts}"
        cfg_file = tmp_path / f"data-{parts}.yaml"
        cfg_file.write_text(
            yaml.safe_dump({"name": "p", "store": str(store), "data": data}, allow_unicode=True)
        )
        res = CliRunner().invoke(app, ["data", "--config", str(cfg_file), "--parts", str(parts)])
        assert res.exit_code == 0, res.output
        key = re.search(r"data: (\w+)", res.output).group(1)  # type: ignore[union-attr]
        st = ArtifactStore(str(store))
        published[parts] = (
            key,
            sorted((f.path, f.size, f.sha256) for f in st.open("data", key).manifest.files),
        )
        assert not st.resumable_dir("data", key).exists()
    assert sorted(built) == [(0, "data-part"), (1, "data-part"), (2, "data-part")]  # only in part flows
    assert published[3] == published[1]  # same key, same files, same bytes
    assert "dataset.parquet" in {p for p, _, _ in published[3][1]}
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["data-part"])))
    runs = [r for r in runs if r.parameters.get("store") == str(tmp_path / "store-3")]  # a shared harness
    assert len(runs) == 3 and all(r.state is not None and r.state.is_completed() for r in runs)
    assert sorted(r.parameters["part"] for r in runs) == [0, 1, 2]
    with pytest.raises(
        ValueError, match=r"importing data in parts needs a store folder .* the data stage whole"
    ):
        data_part(DataConfig.model_validate(data), "memory://mnaft-parts", 0, 2)
