"""The mnaft flow end to end on a tiny model and a tiny table dataset: runs, caches, invalidates."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from mnaft_core.config import FinetuneSuite, PipelineConfig, SystemSpec
from mnaft_core.data.config import DataConfig
from mnaft_core.evaluation.systems import EvaluateConfig
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.tiny import save_tiny
from mnaft_core.profiling.runner import ProfileConfig
from mnaft_core.selection.lape import LapeConfig
from mnaft_core.selection.select import SelectConfig
from mnaft_core.training.config import FinetuneConfig
from storage import ArtifactStore
from tasks.plan import Plan

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
    ("Undo", "Rückgängig"),
    ("Redo", "Wiederholen"),
    ("Zoom in", "Vergrößern"),
    ("Zoom out", "Verkleinern"),
    ("Edit", "Bearbeiten"),
    ("View", "Ansicht"),
    ("Tools", "Werkzeuge"),
    ("Window", "Fenster"),
    ("Back", "Zurück"),
    ("Next", "Weiter"),
]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    root = tmp_path_factory.mktemp("pipeline")
    tsv = root / "pairs.tsv"
    tsv.write_text("src_text\ttgt_text\n" + "".join(f"{a}\t{b}\n" for a, b in PAIRS))
    model = save_tiny("qwen2-vl", root / "tiny")
    data = DataConfig.model_validate(
        {
            "directions": [{"src": "en", "tgt": "de"}, {"src": "de", "tgt": "en"}],
            "sources": [{"kind": "table", "path": str(tsv), "src_lang": "en", "tgt_lang": "de"}],
            "split": {"val_fraction": 0.1, "test_fraction": 0.2},
            "render": {"height": 32, "max_width": 128, "max_lines": 1, "font_size": [14, 16]},
        }
    )
    return PipelineConfig(
        name="tiny",
        store=str(root / "store"),
        model=ModelConfig(name_or_path=str(model), device="cpu"),
        data=data,
        profile=ProfileConfig(max_samples_per_direction=8, batch_size=4, shard_size=4, sample_means=True),
        select=SelectConfig(lape=LapeConfig(top_rate=0.05), layer_fraction=1.0),
        finetune=FinetuneSuite(
            settings=FinetuneConfig(steps=2, batch_size=4, warmup_steps=0, checkpoint_every=1),
            systems=[
                SystemSpec(name="mnaft", method="mnaft"),
                SystemSpec(name="random", method="mnaft", mask="random"),
                SystemSpec(name="lora", method="lora"),
            ],
        ),
        evaluate=EvaluateConfig(
            max_samples_per_direction=3, max_new_tokens=4, cascade=False, significance_samples=20
        ),
    )


def _builds(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count artifacts actually built (a writer opened), not task runs that found their artifact."""
    counts: Counter[str] = Counter()
    real = ArtifactStore.writer

    def counted(self: ArtifactStore, stage: str, key: str, **kw: Any) -> Any:
        counts[stage] += 1
        return real(self, stage, key, **kw)

    monkeypatch.setattr(ArtifactStore, "writer", counted)
    return counts


def test_pipeline_runs_caches_and_invalidates_downstream_only(
    prefect_harness: None, config: PipelineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.pipeline import mnaft_flow

    counts = _builds(monkeypatch)
    keys = mnaft_flow(config)
    assert counts == Counter(data=1, profile=1, select=2, finetune=3, evaluate=1)
    st = ArtifactStore(config.store)
    report = st.open("evaluate", keys["evaluate"])
    outputs = pl.read_parquet(report.open("outputs.parquet"))
    assert set(outputs["system"]) == {"base", "base-read+translate", "mnaft", "random", "lora"}
    assert {"report.json", "report.md", "scores.png"} <= {f.path for f in report.manifest.files}
    mask = st.open("select", keys["select:mnaft"])
    assert {"mask.safetensors", "neurons.parquet", "layers.parquet", "specific_heatmap.png",
            "sample_embedding_language.png", "specificity.parquet", "overlap.parquet",
            "specificity.png"} <= {f.path for f in mask.manifest.files}  # fmt: skip
    assert mask.manifest.metrics["specificity"]["tested"] > 0  # the selection measured what it chose
    with get_client(sync_client=True) as client:  # each long stage showed its progress, ending at 100
        for stage in ("profile", "finetune", "evaluate"):
            flt = ArtifactFilter(key=ArtifactFilterKey(any_=[f"{stage}-progress"]))
            found = client.read_artifacts(artifact_filter=flt)  # sorted by id, not by time
            newest = max(found, key=lambda a: a.created or 0) if found else None  # type: ignore[arg-type,return-value]
            assert newest is not None and newest.type == "progress" and newest.data == 100.0, stage
        flt = ArtifactFilter(key=ArtifactFilterKey(any_=["mask-mnaft"]))
        assert "Language specificity" in str(client.read_artifacts(artifact_filter=flt)[-1].data)
    assert "neuron_delta.safetensors" in {
        f.path for f in st.open("finetune", keys["finetune:mnaft:0"]).manifest.files
    }

    assert Plan(config).keys() == keys  # what a stage run alone computes for its inputs
    counts.clear()
    assert mnaft_flow(config) == keys  # unchanged: nothing recomputed
    assert sum(counts.values()) == 0

    changed = config.model_copy(update={"select": config.select.model_copy(update={"layer_fraction": 0.5})})
    counts.clear()
    new = mnaft_flow(changed)
    # select changed: both masks, both mask-based fine-tunes, evaluation rerun; data, profile, lora do not
    assert counts == Counter(select=2, finetune=2, evaluate=1)
    assert new["profile"] == keys["profile"] and new["finetune:lora:0"] == keys["finetune:lora:0"]
    assert Plan(changed).keys() == new


def test_each_stage_artifact_links_to_its_inputs_artifacts(
    prefect_harness: None, config: PipelineConfig
) -> None:
    """The UI can be followed back from a fine-tuning run: finetune -> mask -> profile -> data."""
    from flows.pipeline import mnaft_flow

    keys = mnaft_flow(config)  # cached when the test above ran: its artifacts are on the server

    def versions(artifact: str, key: str) -> list[Any]:
        """Every version of ``artifact`` made for ``key`` (its description names the key)."""
        with get_client(sync_client=True) as client:
            flt = ArtifactFilter(key=ArtifactFilterKey(any_=[artifact]))
            found = [a for a in client.read_artifacts(artifact_filter=flt) if key in (a.description or "")]
        assert found, f"no {artifact} artifact for {key}"
        return found

    chain = [
        ("finetune-mnaft-run", keys["finetune:mnaft:0"], "mask", "mask-mnaft", keys["select:mnaft"]),
        ("mask-mnaft", keys["select:mnaft"], "profile", "profile-summary", keys["profile"]),
        ("profile-summary", keys["profile"], "data", "dataset-card", keys["data"]),
    ]
    for artifact, key, input_name, upstream, up_key in chain:
        text = str(versions(artifact, key)[0].data)
        assert "## Made from" in text, text
        line = next(ln for ln in text.splitlines() if ln.startswith(f"- {input_name}:"))
        assert f"`{up_key}`" in line and f"[{upstream}](" in line, line
        linked = line.split("/artifacts/artifact/")[1].split(")")[0]
        assert linked in {str(a.id) for a in versions(upstream, up_key)}, line  # that key's very version
    evaluation = str(versions("evaluation-report", keys["evaluate"])[0].data)
    assert f"finetune:lora:0: finetune `{keys['finetune:lora:0']}` ([finetune-lora-run](" in evaluation


def test_checkpoints_announce_themselves_and_get_reprofiled_once(
    prefect_harness: None, config: PipelineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jinja2

    import tasks.finetune
    from flows.deploy import checkpoint_trigger
    from flows.pipeline import mnaft_flow
    from flows.reprofile import scan_checkpoints_flow

    events: list[dict[str, Any]] = []
    monkeypatch.setattr(
        tasks.finetune, "emit_event", lambda event, **kw: events.append({"event": event, **kw})
    )
    st = ArtifactStore(config.store)
    for m in st.manifests("finetune"):  # make the finetune tasks run (and announce) again
        st.delete("finetune", m.key)
    keys = mnaft_flow(config)
    assert {e["event"] for e in events} == {"mnaft.checkpoint.created"}
    assert len(events) == 3
    # the deployment trigger's parameter template, rendered on a real event, names a loadable folder
    template = checkpoint_trigger().parameters["checkpoint"]  # type: ignore[index]
    folder = jinja2.Template(template).render(event={"resource": events[0]["resource"]})
    assert (Path(folder) / "config.json").is_file()

    counts = _builds(monkeypatch)
    location = str(Path(config.store) / "finetune")
    fresh = scan_checkpoints_flow(location, config, keys["data"])
    assert len(fresh) == 3
    assert counts["profile"] == 3 and counts["select"] == 3 and counts["drift"] == 3
    drift = st.manifests("drift")[-1]
    assert 0.0 <= drift.metrics["jaccard"] <= 1.0
    assert "| module | layer |" in st.open("drift", drift.key).read_bytes("drift.md").decode()
    counts.clear()
    assert scan_checkpoints_flow(location, config) == []
    assert sum(counts.values()) == 0
