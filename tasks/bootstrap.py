"""`mnaft bootstrap` as a task: build the organisms into the store, then (optionally) install them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from mnaft_core._base import ProgressFn
from mnaft_core.models.loading import EMBEDDED
from mnaft_core.organism.bootstrap import MANIFEST, bootstrap
from mnaft_core.organism.config import BootstrapConfig
from storage import ArtifactStore
from tasks._stage import publish, show_pictures, stage_key, stage_progress, store_cache

STAGE = "organism"
FOLDERS = {"organism": "embedded:organism", "nllb-organism": "embedded:nllb-organism"}


def organism_key(cfg: BootstrapConfig, data_key: str, store: str = "") -> str:
    return stage_key(STAGE, cfg.organism, {"data": data_key}, __name__)


def build_organism(
    cfg: BootstrapConfig, data_key: str, store: str, on_progress: ProgressFn | None = None
) -> str:
    """Train both organisms on the dataset artifact and publish them as one store artifact."""
    oc = cfg.organism
    warmup = oc.text_warmup.steps if oc.text_warmup is not None else 0
    offsets = {
        1: 0,
        4: oc.reading_ctc.steps,  # the optional text-only warm-up runs between stages 1 and 2
        2: oc.reading_ctc.steps + warmup,
        3: oc.reading_ctc.steps + warmup + oc.mllm.steps,
    }  # stage -> steps before
    total = offsets[3] + oc.mt.train.steps

    def log(row: dict[str, float]) -> None:
        stage, step = int(row["stage"]), int(row["step"])
        if step % 250 == 0:
            print(f"stage {stage} step {step}: loss {row['loss']:.3f} ({row['seconds']:.0f} s)")
        if on_progress is not None:
            on_progress(offsets.get(stage, 0) + step + 1, total)

    def build(out: Path) -> dict[str, Any]:
        dataset = ArtifactStore(store).open("data", data_key).local_dir()
        result = bootstrap(cfg, dataset, out, data_key, log=log)
        return {"metrics": result.manifest["metrics"]["overall"], "seconds": result.manifest["seconds"]}

    key = organism_key(cfg, data_key)
    return publish(
        store,
        STAGE,
        key,
        params=cfg.organism.model_dump(mode="json"),
        inputs={"data": data_key},
        module=__name__,
        build=build,
    )


def install(store: str, key: str, name: str = "organism") -> list[Path]:
    """Copy the artifact's two model folders over assets/<name> and assets/nllb-<name> (each replaced
    whole, atomically)."""
    art = ArtifactStore(store).open(STAGE, key)
    src = art.local_dir()
    installed = []
    for folder, embedded in FOLDERS.items():
        dest = EMBEDDED[embedded.replace("organism", name)]
        tmp = dest.with_name(dest.name + ".installing")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src / folder, tmp)
        old = dest.with_name(dest.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
        installed.append(dest)
    return installed


@task(
    name="bootstrap",
    cache_key_fn=store_cache(STAGE, organism_key),
    persist_result=True,
    result_serializer="json",
)
def bootstrap_task(cfg: BootstrapConfig, data_key: str, store: str) -> str:
    """Build the organisms (reading + text translation MLLM, NLLB-architecture MT) unless stored."""
    with stage_progress(STAGE, organism_key(cfg, data_key), "building the organisms") as on_progress:
        key = build_organism(cfg, data_key, store, on_progress)
    manifest = json.loads(ArtifactStore(store).open(STAGE, key).read_bytes(f"organism/{MANIFEST}"))
    m = manifest["metrics"]
    rows = [{"direction": d, **v} for d, v in sorted(m["by_direction"].items())]
    create_table_artifact(key="organism-metrics", table=rows, description=f"organism {key}: held-out test")
    overall = m["overall"]
    create_markdown_artifact(
        key="organism-summary",
        markdown=(
            f"# Organism {key}\n\nreading CER {overall['reading_cer']:.3f}; "
            f"text chrF++ {overall['text_chrf']:.1f}; "
            f"zero-shot image chrF++ {overall['zero_shot_image_chrf']:.1f} "
            f"vs own cascade {overall['own_cascade_chrf']:.1f} (gap {overall['gap_chrf']:.1f})\n\n"
            + show_pictures(store, STAGE, key)
        ),
        description=key,
    )
    return key
