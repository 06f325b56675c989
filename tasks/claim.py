"""The claim's own tasks: split sizes checked, learning rates chosen, and the claim report (a "claim"
artifact, keyed by every evaluation, checkpoint and mask it reads, and by the claim's settings)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from mnaft_core.claim import EVALUATED_AS, ClaimConfig
from mnaft_core.data.dataset import load_samples
from mnaft_core.evaluation.claim import choose_rates, claim_statistics
from mnaft_core.evaluation.claim_report import write_claim_report
from mnaft_core.evaluation.report import score_outputs
from mnaft_core.evaluation.run import RETENTION_FILE
from storage import ArtifactStore
from tasks._stage import inputs_markdown, publish, stage_key, stage_progress, store_cache

STAGE = "claim"
Keys = Mapping[str, Mapping[int, str]]  # system -> seed -> artifact key


def grid_label(system: str, lr: float) -> str:
    """The evaluate stage's name of one grid point."""
    return f"{system}@{lr:g}"


@task(name="claim-split-sizes")
def check_split_sizes(data_key: str, store: str, sizes: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """Strings per direction of each split the claim uses; fewer than it asks for is an error, not a
    smaller test (docs/claim.md)."""
    folder = ArtifactStore(store).open("data", data_key).local_dir()
    found: dict[str, dict[str, int]] = {}
    for split, need in sizes.items():
        counts: dict[str, int] = {}
        for s in load_samples(folder, split, limit=need):
            counts[s.direction] = counts.get(s.direction, 0) + 1
        short = {d: n for d, n in counts.items() if n < need}
        if short or not counts:
            raise ValueError(
                f"data {data_key}: the {split} split has fewer than {need} strings per direction "
                f"({short or 'none'}): the claim's test is not made smaller; build more data"
            )
        found[split] = counts
    return found


@task(name="claim-rates")
def choose_rates_task(
    store: str, evaluate_key: str, grid: Mapping[str, tuple[str, float]]
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Mean validation chrF++ over directions of every grid point (label -> system, lr), and each
    system's chosen rate."""
    art = ArtifactStore(store).open("evaluate", evaluate_key)
    scores = score_outputs(pl.read_parquet(art.open("outputs.parquet")))
    means = {
        str(name): float(v) for name, v in scores.group_by("system").agg(pl.col("chrf").mean()).iter_rows()
    }
    rows = [{"system": s, "lr": lr, "chrf": means[label]} for label, (s, lr) in grid.items()]
    rows.sort(key=lambda r: (r["system"], r["lr"]))
    return rows, choose_rates(rows)


def claim_params(cfg: ClaimConfig) -> dict[str, Any]:
    """What the report depends on beyond its inputs' keys."""
    keep = (
        "name",
        "preregistered",
        "steps",
        "seeds",
        "grid_seed",
        "bootstrap_samples",
        "bootstrap_seed",
        "baseline",
        "decide_against",
        "systems",
    )
    return cfg.model_dump(mode="json", include=set(keep))


def _inputs(test_key: str, val_key: str, masks: Mapping[str, str], checkpoints: Keys) -> dict[str, str]:
    return {
        "evaluate": test_key,
        "evaluate:val": val_key,
        **{f"mask:{label}": k for label, k in sorted(masks.items())},
        **{
            f"finetune:{s}:{seed}": k
            for s, seeds in sorted(checkpoints.items())
            for seed, k in sorted(seeds.items())
        },
    }


def claim_key(
    cfg: ClaimConfig, test_key: str, val_key: str, masks: Mapping[str, str], checkpoints: Keys, **_: Any
) -> str:
    return stage_key(STAGE, claim_params(cfg), _inputs(test_key, val_key, masks, checkpoints), __name__)


def build_claim(
    cfg: ClaimConfig,
    test_key: str,
    val_key: str,
    masks: Mapping[str, str],
    checkpoints: Keys,
    grid: list[dict[str, Any]],
    rates: Mapping[str, float],
    store: str,
) -> str:
    st = ArtifactStore(store)

    def build(out: Path) -> dict[str, Any]:
        art = st.open("evaluate", test_key)
        outputs = pl.read_parquet(art.open("outputs.parquet"))
        names = {s.name: EVALUATED_AS.get(s.kind, s.name) for s in cfg.systems}
        rename = pl.col("system").replace({v: k for k, v in names.items()})
        outputs = outputs.with_columns(rename)
        base = next((s.name for s in cfg.systems if s.kind == "base"), None)
        has_retention = base is not None and any(f.path == RETENTION_FILE for f in art.manifest.files)
        retained = pl.read_parquet(art.open(RETENTION_FILE)).with_columns(rename) if has_retention else None
        seedless = [s.name for s in cfg.systems if s.kind not in ("full", "lora", "mnaft")]
        with stage_progress(STAGE, key, "claim statistics") as on_progress:
            on_progress(0, 1)
            result = claim_statistics(
                outputs,
                retained,
                [s.name for s in cfg.systems],
                cfg.baseline,
                cfg.seeds,
                cfg.decide_against,
                cfg.bootstrap_samples,
                cfg.bootstrap_seed,
                seedless=seedless,
                base=base or "base",
            )
            on_progress(1, 1)
        report = write_claim_report(out, result, _context(cfg, st, masks, checkpoints, grid, rates, result))
        return {"decision": report["decision"]["outcome"], "comparisons": len(report["comparisons"])}

    key = claim_key(cfg, test_key, val_key, masks, checkpoints)
    return publish(
        store,
        STAGE,
        key,
        params=claim_params(cfg),
        inputs=_inputs(test_key, val_key, masks, checkpoints),
        module=__name__,
        build=build,
    )


def _context(
    cfg: ClaimConfig,
    st: ArtifactStore,
    masks: Mapping[str, str],
    checkpoints: Keys,
    grid: list[dict[str, Any]],
    rates: Mapping[str, float],
    result: Any,
) -> dict[str, Any]:
    params = {}
    for system, seeds in checkpoints.items():
        metrics = st.open("finetune", seeds[min(seeds)]).manifest.metrics
        params[system] = metrics.get("trainable_params")
    grouped: dict[tuple[str, str], list[str]] = {}  # (system, mask key) -> seeds that train on it
    for label, key in masks.items():
        system, seed = label.rsplit(":", 1)
        grouped.setdefault((system, key), []).append(seed)
    mask_info: dict[str, dict[str, Any]] = {}
    for (system, key), on in sorted(grouped.items()):
        m = st.open("select", key).manifest.metrics
        label = f"{system} (seed{'s' if len(on) > 1 else ''} {', '.join(sorted(on, key=int))})"
        mask_info[label] = {
            "key": key,
            **{k: m.get(k) for k in ("method", "neurons", "selected_layers", "specificity")},
        }
    scores = {s["system"]: s["chrf"] for s in result.scores}
    base_name = next((s.name for s in cfg.systems if s.kind == "base"), None)
    base = next((r for r in result.retention if r["system"] == base_name), None)
    pre: dict[str, Any] = {}
    if base is not None and base_name in scores:
        pre |= {
            "base_text_chrf": base["text_chrf"],
            "base_image_chrf": scores[base_name],
            "modality_gap": base["text_chrf"] - scores[base_name],
        }
    spec = next((v["specificity"] for k, v in mask_info.items() if k.startswith(f"{cfg.baseline} (")), None)
    if spec:
        pre |= {
            "specificity_share": spec.get("share_significant"),
            "specificity_selected": spec.get("selected"),
            "specificity_significant": spec.get("significant"),
        }
    return {
        "name": cfg.name,
        "preregistered": cfg.preregistered,
        "model": cfg.pipeline.model.name_or_path,
        "steps": cfg.steps,
        "grid_seed": cfg.grid_seed,
        "kinds": {s.name: s.kind for s in cfg.systems},
        "chosen_lr": dict(rates),
        "grid": grid,
        "trainable_params": params,
        "masks": mask_info,
        "preconditions": pre,
        "config": cfg.model_dump(mode="json"),
    }


@task(name="claim", cache_key_fn=store_cache(STAGE, claim_key), persist_result=True, result_serializer="json")
def claim_task(
    cfg: ClaimConfig,
    test_key: str,
    val_key: str,
    masks: dict[str, str],
    checkpoints: dict[str, dict[int, str]],
    grid: list[dict[str, Any]],
    rates: dict[str, float],
    store: str,
) -> str:
    """The claim report: statistics, decision, tables (claim.json, claim.md)."""
    key = build_claim(cfg, test_key, val_key, masks, checkpoints, grid, rates, store)
    art = ArtifactStore(store).open(STAGE, key)
    create_markdown_artifact(
        key="claim-report",
        markdown=art.read_bytes("claim.md").decode() + "\n\n" + inputs_markdown(store, STAGE, key),
        description=key,
    )
    report = json.loads(art.read_bytes("claim.json"))
    create_table_artifact(key="claim-comparisons", table=report["comparisons"], description=key)
    return key
