"""Deployments: one per flow, on work pools `cpu` and `gpu`; the scan on a cron, profiling on an event.

`mnaft deploy` registers them against the Prefect API in PREFECT_API_URL (`mnaft server` locally, the
compose stack's server otherwise); workers started with `mnaft worker --pool cpu|gpu` run them from
this checkout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

from mnaft_core.claim import ClaimConfig
from mnaft_core.config import PipelineConfig, load_model
from mnaft_core.organism.config import BootstrapConfig
from tasks.finetune import CHECKPOINT_EVENT

ROOT = Path(__file__).resolve().parents[1]
GPU_STAGES = {"profile", "finetune", "evaluate"}
# finetune.settings.nodes > 1: a Kubernetes pool whose jobs are N GPU pods in one torchrun rendezvous
MULTINODE_POOL = "gpu-multinode"
MULTINODE_TEMPLATE = ROOT / "flows" / "k8s" / "finetune-multinode.json"


@dataclass
class DeploymentSpec:
    name: str
    entrypoint: str  # path:function, relative to the project root
    pool: str
    parameters: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    triggers: list[DeploymentEventTrigger] = field(default_factory=list)


def checkpoint_trigger() -> DeploymentEventTrigger:
    """Profile a checkpoint when `finetune` announces it; the event's resource names its folder."""
    return DeploymentEventTrigger(
        name="profile new checkpoint",
        expect={CHECKPOINT_EVENT},
        match={"prefect.resource.id": "mnaft.checkpoint.*"},
        parameters={"checkpoint": "{{ event.resource['mnaft.path'] }}"},
    )


def deployment_specs(cfg: PipelineConfig) -> list[DeploymentSpec]:
    """What `mnaft deploy` registers for ``cfg`` (its sections are the default parameters)."""
    c = cfg.model_dump(mode="json")
    store = cfg.store
    # the stage flows take the whole config: with no upstream key they open what the pipeline made for it
    stage_params: dict[str, dict[str, Any]] = {
        "data": {"config": c["data"], "store": store},
        "profile": {"config": c},
        "select": {"config": c},
        "finetune": {"config": c},
        "evaluate": {"config": c},
    }
    specs = [DeploymentSpec("mnaft", "flows/pipeline.py:mnaft_flow", "cpu", {"config": c})]

    def pool(stage: str) -> str:
        if stage == "finetune" and cfg.finetune.settings.nodes > 1:
            return MULTINODE_POOL
        return "gpu" if stage in GPU_STAGES else "cpu"

    specs += [
        DeploymentSpec(stage, f"flows/stages.py:{stage}_flow", pool(stage), params)
        for stage, params in stage_params.items()
    ]
    organism = load_model(ROOT / "configs" / "organism.yaml", BootstrapConfig).model_dump(mode="json")
    bootstrap = {"config": organism, "store": store}  # runnable from the UI as it is
    specs.append(DeploymentSpec("bootstrap", "flows/stages.py:bootstrap_flow", "cpu", bootstrap))
    claim = load_model(ROOT / "configs" / "claim.yaml", ClaimConfig).model_dump(mode="json")
    claim["pipeline"]["store"] = store  # the experiment of docs/claim.md, in this deployment's store
    specs.append(DeploymentSpec("claim", "flows/claim.py:claim_flow", "gpu", {"config": claim}))
    # started by the profile / evaluate flows (parts > 1), one flow run per part, each on a free gpu worker
    specs.append(DeploymentSpec("profile-part", "flows/stages.py:profile_part_flow", "gpu", {"store": store}))
    specs.append(
        DeploymentSpec("evaluate-part", "flows/stages.py:evaluate_part_flow", "gpu", {"store": store})
    )
    specs.append(DeploymentSpec("data-part", "flows/stages.py:data_part_flow", "cpu", {"store": store}))
    reprofile = {"config": c}
    specs.append(
        DeploymentSpec(
            "profile-checkpoint",
            "flows/reprofile.py:profile_checkpoint_flow",
            cfg.reprofile.pool,
            reprofile,
            triggers=[checkpoint_trigger()],
        )
    )
    if cfg.reprofile.location:
        specs.append(
            DeploymentSpec(
                "scan-checkpoints",
                "flows/reprofile.py:scan_checkpoints_flow",
                cfg.reprofile.pool,
                {**reprofile, "location": cfg.reprofile.location},
                cron=cfg.reprofile.cron,
            )
        )
    return specs


def ensure_pools(names: set[str]) -> list[str]:
    """Create the missing work pools (process type, as `mnaft worker` serves them; the multi-node pool
    as Kubernetes type with the committed job template); the names created."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    created = []
    with get_client(sync_client=True) as client:
        for name in sorted(names):
            try:
                client.read_work_pool(name)
            except ObjectNotFound:
                if name == MULTINODE_POOL:
                    template = json.loads(MULTINODE_TEMPLATE.read_text())
                    pool = WorkPoolCreate(name=name, type="kubernetes", base_job_template=template)
                else:
                    pool = WorkPoolCreate(name=name, type="process")
                client.create_work_pool(pool)
                created.append(name)
    return created


def deploy(specs: list[DeploymentSpec], source: Path = ROOT) -> list[str]:
    """Register ``specs`` from the checkout at ``source``, creating missing work pools first."""
    from prefect import flow

    ensure_pools({spec.pool for spec in specs})
    ids = []
    for spec in specs:
        f = flow.from_source(source=str(source), entrypoint=spec.entrypoint)
        dep_id = f.deploy(  # type: ignore[union-attr]
            name=spec.name,
            work_pool_name=spec.pool,
            parameters=spec.parameters,
            cron=spec.cron,
            triggers=list(spec.triggers) or None,
            build=False,
            push=False,
            print_next_steps=False,
        )
        ids.append(str(dep_id))
    return ids
