"""The `claim` flow: docs/claim.md's pre-registered experiment, end to end, every stage cached.

data -> split sizes checked -> profile -> one select per distinct selection -> learning-rate grid
(seed 0, validation split) -> each system's rate -> every seed at its rate -> evaluate all systems on
the test split (with retention) -> the claim report.

Each stage is the pipeline's own task keyed by content, so a rerun skips what exists and resumes where
a killed run stopped; the two evaluations save each model's outputs as it finishes (they run in units).
"""

from __future__ import annotations

from prefect import flow

from mnaft_core.claim import ClaimConfig
from tasks.claim import check_split_sizes, choose_rates_task, claim_task, grid_label
from tasks.data import data_task
from tasks.evaluate import evaluate_task
from tasks.finetune import finetune_task
from tasks.profile import profile_task
from tasks.select import select_task

# build_evaluate runs its units itself, saving each as it ends, whenever parts > 1: a rerun resumes
# after the last finished model instead of evaluating every model again (the result is the same).
UNIT_RESUME = 2


@flow(name="claim", log_prints=True)
def claim_flow(config: ClaimConfig) -> dict[str, str]:
    """Run (or reuse from the store) the claim experiment; returns stage -> artifact key.

    Args:
        config: the claim (as in configs/claim.yaml): its pipeline section, systems, step budget,
            seeds, split sizes and bootstrap
    """
    p = config.pipeline
    store, max_train = p.store, p.finetune.max_train_per_direction
    data = data_task(p.data, store)
    check_split_sizes(data, store, {"test": config.test_per_direction, "val": config.val_per_direction})
    profile = profile_task(p.model, p.profile, data, store)

    masks: dict[str, str] = {}  # "system:seed" -> select key
    by_selection: dict[str, str] = {}  # one select per distinct selection
    for s in config.trained:
        if s.kind != "mnaft":
            continue
        for seed in config.seeds:
            sel = config.select_config(s, seed)
            fp = sel.fingerprint()
            if fp not in by_selection:
                by_selection[fp] = select_task(sel, profile, store)
            masks[f"{s.name}:{seed}"] = by_selection[fp]

    def train(system_name: str, lr: float, seed: int) -> str:
        s = config.system(system_name)
        mask = masks.get(f"{s.name}:{seed}")
        return finetune_task(p.model, config.finetune_config(s, lr, seed), data, mask, store, max_train)

    g = config.grid_seed
    grid: dict[str, tuple[str, float]] = {}
    grid_runs: dict[str, dict[int, str]] = {}
    for s in config.trained:
        for lr in sorted(s.lr_grid):
            label = grid_label(s.name, lr)
            grid[label] = (s.name, lr)
            grid_runs[label] = {g: train(s.name, lr, g)}
    val = evaluate_task(p.model, config.val_evaluate(), data, grid_runs, store, UNIT_RESUME)
    grid_rows, rates = choose_rates_task(store, val, grid)
    print(
        "learning rates chosen on the validation split: " + ", ".join(f"{k} {v:g}" for k, v in rates.items())
    )

    checkpoints = {
        s.name: {seed: train(s.name, rates[s.name], seed) for seed in config.seeds} for s in config.trained
    }
    test = evaluate_task(p.model, config.test_evaluate(), data, checkpoints, store, UNIT_RESUME)
    report = claim_task(config, test, val, masks, checkpoints, grid_rows, rates, store)
    return {
        "data": data,
        "profile": profile,
        **{f"select:{k}": v for k, v in masks.items()},
        **{f"grid:{label}": runs[g] for label, runs in grid_runs.items()},
        "evaluate:val": val,
        **{f"finetune:{s}:{seed}": k for s, seeds in checkpoints.items() for seed, k in seeds.items()},
        "evaluate": test,
        "claim": report,
    }
