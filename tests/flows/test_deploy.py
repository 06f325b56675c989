"""Deployments: every flow, the right pools, the scan on the configured cron, profiling on the event."""

from __future__ import annotations

from pathlib import Path

from flows.deploy import MULTINODE_POOL, MULTINODE_TEMPLATE, deployment_specs
from mnaft_core.config import load_config
from tasks.finetune import CHECKPOINT_EVENT

ROOT = Path(__file__).resolve().parents[2]


def test_specs_cover_every_flow_on_the_right_pool() -> None:
    cfg = load_config(ROOT / "configs/demo.yaml", {"reprofile.location": "s3://mnaft/store/finetune"})
    specs = {s.name: s for s in deployment_specs(cfg)}
    assert set(specs) == {"mnaft", "data", "bootstrap", "profile", "select", "finetune", "evaluate",
                          "profile-checkpoint", "scan-checkpoints", "profile-part", "data-part",
                          "evaluate-part", "claim"}  # fmt: skip
    assert {n for n, s in specs.items() if s.pool == "gpu"} >= {
        "profile",
        "finetune",
        "evaluate",
        "profile-part",
        "evaluate-part",
    }
    assert specs["data"].pool == specs["data-part"].pool == specs["select"].pool == "cpu"
    assert specs["scan-checkpoints"].cron == cfg.reprofile.cron
    assert specs["scan-checkpoints"].parameters["location"] == "s3://mnaft/store/finetune"
    (trigger,) = specs["profile-checkpoint"].triggers
    assert trigger.expect == {CHECKPOINT_EVENT}
    for spec in specs.values():  # every entrypoint names a real flow
        path, func = spec.entrypoint.split(":")
        assert f"def {func}(" in (ROOT / path).read_text()


def test_no_scan_without_a_location() -> None:
    names = {s.name for s in deployment_specs(load_config(ROOT / "configs/demo.yaml"))}
    assert "scan-checkpoints" not in names and "profile-checkpoint" in names


def test_stage_deployments_run_from_the_ui_with_their_defaults() -> None:
    """A run started from the UI with the registered defaults is valid for its flow, and a stage flow
    receives the whole config, so it finds its inputs as the pipeline made them."""
    import importlib

    cfg = load_config(ROOT / "configs/demo.yaml")
    for spec in deployment_specs(cfg):
        if spec.name not in ("mnaft", "data", "profile", "select", "finetune", "evaluate", "bootstrap"):
            continue
        path, func = spec.entrypoint.split(":")
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), func)
        flow.validate_parameters(spec.parameters)  # raises on a missing or ill-typed parameter
        if spec.name in ("profile", "select", "finetune", "evaluate"):
            assert spec.parameters == {"config": cfg.model_dump(mode="json")}


def test_multinode_finetune_goes_to_the_kubernetes_pool() -> None:
    cfg = load_config(ROOT / "configs/demo.yaml", {"finetune.settings.nodes": 2})
    specs = {s.name: s for s in deployment_specs(cfg)}
    assert specs["finetune"].pool == MULTINODE_POOL
    assert specs["finetune"].parameters["config"]["finetune"]["settings"]["nodes"] == 2
    assert specs["profile"].pool == "gpu" and MULTINODE_TEMPLATE.exists()
