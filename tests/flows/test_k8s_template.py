"""The multi-node Kubernetes work pool template: valid for Prefect, renders a well-formed Indexed Job
of N GPU pods whose environment gives every node the same c10d rendezvous; its Service matches."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prefect.server.schemas.actions import validate_base_job_template
from prefect.utilities.templating import apply_values

from mnaft_core.training.launch import LaunchSpec, Rendezvous, lead, torchrun_command

K8S = Path(__file__).resolve().parents[2] / "flows" / "k8s"
TEMPLATE = json.loads((K8S / "finetune-multinode.json").read_text())

# the part of batch/v1 Job the template uses, with Kubernetes' types (a string where an int belongs is
# rejected by the API server)
ENV_VAR = {"type": "object", "required": ["name"], "additionalProperties": False,
           "properties": {"name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                          "value": {"type": "string"},
                          "valueFrom": {"type": "object", "required": ["fieldRef"],
                                        "properties": {"fieldRef": {"type": "object",
                                                                    "required": ["fieldPath"]}}}},
           "oneOf": [{"required": ["value"]}, {"required": ["valueFrom"]}]}  # fmt: skip
QUANTITY = {"type": ["string", "integer"], "pattern": "^[0-9.]+([KMGTPE]i?|m)?$"}
JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "batch/v1"},
        "kind": {"const": "Job"},
        "metadata": {"type": "object", "required": ["namespace", "generateName"],
                     "properties": {"labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "namespace": {"type": "string"}, "generateName": {"type": "string"}}},
        "spec": {"type": "object", "required": ["template", "completions", "parallelism"],
                 "properties": {
                     "completionMode": {"enum": ["Indexed", "NonIndexed"]},
                     "completions": {"type": "integer", "minimum": 1},
                     "parallelism": {"type": "integer", "minimum": 1},
                     "backoffLimit": {"type": "integer", "minimum": 0},
                     "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                     "template": {"type": "object", "required": ["spec"], "properties": {"spec": {
                         "type": "object", "required": ["containers", "restartPolicy"],
                         "properties": {
                             "restartPolicy": {"enum": ["Never", "OnFailure"]},
                             "subdomain": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                             "serviceAccountName": {"type": "string"},
                             "containers": {"type": "array", "minItems": 1, "items": {
                                 "type": "object", "required": ["name", "image"],
                                 "properties": {
                                     "name": {"type": "string"}, "image": {"type": "string"},
                                     "command": {"type": "array", "items": {"type": "string"}},
                                     "args": {"type": "array", "items": {"type": "string"}},
                                     "env": {"type": "array", "items": ENV_VAR},
                                     "ports": {"type": "array", "items": {"type": "object", "required": [
                                         "containerPort"], "properties": {"containerPort": {
                                             "type": "integer", "minimum": 1, "maximum": 65535}}}},
                                     "resources": {"type": "object", "properties": {
                                         "limits": {"type": "object", "additionalProperties": QUANTITY},
                                         "requests": {"type": "object", "additionalProperties": QUANTITY}}},
                                     "volumeMounts": {"type": "array", "items": {
                                         "type": "object", "required": ["name", "mountPath"]}}}}},
                             "volumes": {"type": "array", "items": {"type": "object", "required": ["name"]}},
                         }}}},
                 }},
    },
}  # fmt: skip


def _render(**values: Any) -> dict[str, Any]:
    """What a Kubernetes worker submits: defaults + job variables into the template, then its own env
    (the flow run id among it) put before the template's, as prefect-kubernetes does."""
    props = TEMPLATE["variables"]["properties"]
    given = {k: v["default"] for k, v in props.items() if "default" in v}
    given.update({"command": "prefect flow-run execute", "name": "finetune-run", "labels": {"app": "mnaft"},
                  "env": {"PREFECT_API_URL": "http://prefect:4200/api"}, **values})  # fmt: skip
    jsonschema.validate(given, TEMPLATE["variables"])
    config = apply_values(TEMPLATE["job_configuration"], given)
    env = {**config["env"], "PREFECT__FLOW_RUN_ID": "0b7c"}
    container = config["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": k, "value": v} for k, v in env.items()] + container["env"]
    return dict(config["job_manifest"])


def test_the_template_is_a_valid_prefect_base_job_template() -> None:
    validate_base_job_template(TEMPLATE)  # every placeholder is a declared variable
    jsonschema.Draft202012Validator.check_schema(TEMPLATE["variables"])
    assert {"job_manifest", "command", "env", "namespace", "stream_output"} <= set(
        TEMPLATE["job_configuration"]
    )
    with pytest.raises(jsonschema.ValidationError):  # the variables reject a bad value
        jsonschema.validate({"nodes": 0}, TEMPLATE["variables"])


def test_the_rendered_job_is_n_gpu_pods_with_one_rendezvous() -> None:
    job = _render(nodes=4, gpus_per_node=8, namespace="ml")
    jsonschema.validate(job, JOB_SCHEMA)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (
        "Indexed", 4, 4, 0)  # fmt: skip
    assert job["metadata"]["namespace"] == "ml" and job["metadata"]["generateName"] == "finetune-run-"
    (c,) = pod["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"] == 8
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/shared"]]["persistentVolumeClaim"]["claimName"] == "mnaft-shared"
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"  # NCCL's shared memory
    # pod 0 runs the flow run's command, the others follow it
    script = c["args"][0]
    assert "exec prefect flow-run execute" in script and "mnaft_core.training.launch --follow" in script
    assert 'MNAFT_CACHE="$MNAFT_SHARED_DIR/cache"' in script  # dataset, checkpoints, output: shared

    env = {e["name"]: e for e in c["env"]}
    assert "PREFECT_API_URL" in env and "PREFECT__FLOW_RUN_ID" in env
    downward = {k: e["valueFrom"]["fieldRef"]["fieldPath"] for k, e in env.items() if "valueFrom" in e}
    assert downward == {
        "MNAFT_JOB_NAME": "metadata.labels['batch.kubernetes.io/job-name']",
        "MNAFT_NODE_INDEX": "metadata.annotations['batch.kubernetes.io/job-completion-index']",
    }
    # what pod 2 of the job "finetune-run-x7k" computes from that environment
    pod_env = {k: e["value"] for k, e in env.items() if "value" in e}
    pod_env.update(re.findall(r"\b(MNAFT_[A-Z_]+)=([0-9]+)\b", script))  # exported by the script (ints)
    pod_env.update({"MNAFT_JOB_NAME": "finetune-run-x7k", "MNAFT_NODE_INDEX": "2"})
    rdzv = Rendezvous.from_env(pod_env)
    assert rdzv.nodes == 4 and rdzv.endpoint == f"finetune-run-x7k-0.{pod['subdomain']}:29400"
    assert rdzv.node_addr == f"finetune-run-x7k-2.{pod['subdomain']}"
    cmd = torchrun_command(rdzv.spec_path, 8, rdzv)
    assert cmd[cmd.index("torch.distributed.run") + 1 :] == [
        "--nnodes=4", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv.endpoint}", "--rdzv-id=0b7c",
        f"--local-addr={rdzv.node_addr}", "--rdzv-conf=is_host=false", "--nproc_per_node=8",
        "-m", "mnaft_core.training.launch", "/shared/launch/0b7c/launch.json",
    ]  # fmt: skip
    assert c["ports"][0]["containerPort"] == 29400


def test_the_service_gives_the_pods_their_names() -> None:
    svc = yaml.safe_load((K8S / "rendezvous-service.yaml").read_text())
    job = _render()
    pod = job["spec"]["template"]
    assert svc["kind"] == "Service" and svc["spec"]["clusterIP"] == "None"  # headless: per-pod DNS
    assert svc["metadata"]["name"] == pod["spec"]["subdomain"]
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert svc["spec"]["ports"][0]["port"] == pod["spec"]["containers"][0]["ports"][0]["containerPort"]


def test_node_zero_refuses_what_other_nodes_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(
        RuntimeError,
        match=r"needs MNAFT_NODES, .*PREFECT__FLOW_RUN_ID, MNAFT_JOB_NAME, MNAFT_RDZV_SERVICE in the env",
    ):
        Rendezvous.from_env({"MNAFT_NODE_INDEX": "0"})
    bare = {
        "MNAFT_NODES": "2",
        "MNAFT_NODE_INDEX": "1",
        "MNAFT_SHARED_DIR": "/s",
        "PREFECT__FLOW_RUN_ID": "r",
    }
    with pytest.raises(RuntimeError, match="MNAFT_JOB_NAME, MNAFT_RDZV_SERVICE in the environment"):
        Rendezvous.from_env(bare)
    direct = Rendezvous.from_env(
        {**bare, "MNAFT_RDZV_ENDPOINT": "10.0.0.1:29400", "MNAFT_NODE_ADDR": "10.0.0.2"}
    )
    assert (direct.endpoint, direct.node_addr, direct.node_index) == ("10.0.0.1:29400", "10.0.0.2", 1)
    rdzv = Rendezvous(2, 0, "h:1", "h", "run", tmp_path / "shared")
    (tmp_path / "shared").mkdir()
    spec = LaunchSpec({}, {"nodes": 2}, str(tmp_path / "local-data"), str(tmp_path / "shared" / "run"),
                      str(tmp_path / "shared" / "out"))  # fmt: skip
    with pytest.raises(RuntimeError, match=r"dataset_dir .*local-data is not on the shared volume"):
        lead(spec, 1, rdzv)
    with pytest.raises(RuntimeError, match=r"finetune\.nodes is 3 but the job has MNAFT_NODES=2"):
        lead(LaunchSpec({}, {"nodes": 3}, "", "", ""), 1, rdzv)
    assert not rdzv.spec_path.exists()  # nothing published for the followers
