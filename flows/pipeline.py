"""The end-to-end `mnaft` flow: reads like the stage diagram; no tensor math and no I/O here.

data -> profile -> select (mnaft + each ablation's selector) -> finetune (system x seed) -> evaluate
"""

from __future__ import annotations

from prefect import flow

from mnaft_core.config import PipelineConfig
from tasks.data import data_task
from tasks.evaluate import evaluate_task
from tasks.finetune import finetune_task
from tasks.plan import mask_selectors, selector_config
from tasks.profile import profile_task
from tasks.select import select_task


@flow(name="mnaft", log_prints=True)
def mnaft_flow(config: PipelineConfig) -> dict[str, str]:
    """Run (or reuse from the store) every stage; returns stage -> artifact key.

    ``tasks.plan.Plan.keys`` computes the same keys without running anything: how a stage run alone
    finds its inputs.

    Args:
        config: the whole pipeline: store, model and every stage's section (as in configs/*.yaml)
    """
    store, suite = config.store, config.finetune
    data_key = data_task(config.data, store)
    profile_key = profile_task(config.model, config.profile, data_key, store)
    masks = {
        m: select_task(selector_config(config.select, m), profile_key, store) for m in mask_selectors(suite)
    }
    checkpoints: dict[str, dict[int, str]] = {}
    for system in suite.systems:
        for seed in suite.seeds:
            mask_key = masks[system.mask] if system.mask else None
            checkpoints.setdefault(system.name, {})[seed] = finetune_task(
                config.model,
                suite.config_for(system, seed),
                data_key,
                mask_key,
                store,
                suite.max_train_per_direction,
            )
    evaluate_key = evaluate_task(config.model, config.evaluate, data_key, checkpoints, store)
    return {
        "data": data_key,
        "profile": profile_key,
        **{f"select:{m}": k for m, k in masks.items()},
        **{f"finetune:{s}:{seed}": k for s, seeds in checkpoints.items() for seed, k in seeds.items()},
        "evaluate": evaluate_key,
    }
