"""An evaluation split into parts (one flow run each, a share of the models) publishes the same files."""

from __future__ import annotations

from typing import Any

import pytest

import tasks.evaluate
from flows.stages import data_flow, evaluate_flow, finetune_flow
from mnaft_core.config import PipelineConfig
from storage import ArtifactStore
from tasks.evaluate import UNITS_DIR, evaluate_part
from tasks.plan import resolve_checkpoints
from tests.flows.test_pipeline import config  # noqa: F401  (the tiny pipeline's config fixture)


@pytest.mark.usefixtures("prefect_harness")
def test_parts_publish_the_same_evaluation_byte_for_byte(
    config: PipelineConfig,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = config.model_copy(
        update={"evaluate": config.evaluate.model_copy(update={"max_samples_per_direction": 2})}
    )
    data = data_flow(cfg.data, cfg.store)
    given = {"lora": [finetune_flow(cfg, "lora", seed=0), finetune_flow(cfg, "lora", seed=1)]}
    st = ArtifactStore(cfg.store)

    def published(key: str) -> tuple[Any, Any]:
        m = st.open("evaluate", key).manifest
        return {(f.path, f.size, f.sha256) for f in m.files}, m.metrics

    whole = evaluate_flow(cfg, given)
    expected = published(whole)
    assert {"outputs.parquet", "report.json", "gallery.html"} <= {p for p, _, _ in expected[0]}
    st.delete("evaluate", whole)

    ran: list[str] = []
    real = tasks.evaluate.run_unit
    monkeypatch.setattr(
        tasks.evaluate, "run_unit", lambda u, *a, **kw: ran.append(u.name) or real(u, *a, **kw)
    )
    checkpoints = resolve_checkpoints(cfg, given)
    # a part that ran before (a killed evaluation): its unit is kept, not run again
    assert evaluate_part(cfg.model, cfg.evaluate, data, checkpoints, cfg.store, 1, 2) == ["lora-0"]
    assert evaluate_flow(cfg, given, parts=2) == whole  # parts change nothing in the key
    assert sorted(ran) == ["base", "lora-0", "lora-1"]  # every unit once, over the parts
    assert published(whole) == expected  # same files, same sha256, same headline
    assert not any(p.startswith(UNITS_DIR) for p, _, _ in published(whole)[0])
    assert not st.resumable_dir("evaluate", whole).exists()
    # a finished evaluation leaves parts nothing to do; bad parts and object stores are refused
    assert evaluate_part(cfg.model, cfg.evaluate, data, checkpoints, cfg.store, 0, 2) == []
    with pytest.raises(ValueError, match=r"part 2 is not in 0\.\.1"):
        evaluate_part(cfg.model, cfg.evaluate, data, checkpoints, cfg.store, 2, 2)
    with pytest.raises(ValueError, match="evaluating in parts needs a store folder"):
        evaluate_part(cfg.model, cfg.evaluate, data, checkpoints, "memory://mnaft-parts", 0, 2)
