"""Two "nodes" on this machine, one process each, joined by a c10d rendezvous as the Kubernetes job
template joins its pods: node 0 publishes the spec on the shared folder, node 1 follows it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mnaft_core.models.config import ModelConfig
from mnaft_core.training.config import FinetuneConfig
from mnaft_core.training.launch import METRICS, LaunchSpec, Rendezvous, lead
from tests.mnaft_core.training.test_distributed import setup

__all__ = ["setup"]
ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_nodes_meet_at_the_rendezvous_and_train(setup: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = setup
    shared = tmp_path / "shared"
    shutil.copytree(data, shared / "cache" / "data")
    endpoint = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MNAFT_NODES": "2",
           "MNAFT_NODE_INDEX": "1", "MNAFT_JOB_NAME": "job", "MNAFT_RDZV_SERVICE": "svc",
           "MNAFT_SHARED_DIR": str(shared), "PREFECT__FLOW_RUN_ID": "run-1",
           "MNAFT_RDZV_ENDPOINT": endpoint, "MNAFT_NODE_ADDR": "127.0.0.1",
           "MNAFT_FOLLOW_TIMEOUT_S": "300"}  # fmt: skip
    follow = [sys.executable, "-m", "mnaft_core.training.launch", "--follow"]
    follower = subprocess.Popen(follow, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)  # fmt: skip
    try:
        cfg = FinetuneConfig(method="lora", steps=3, batch_size=4, warmup_steps=0, lr=1e-2, nodes=2)
        spec = LaunchSpec(ModelConfig(name_or_path=str(model), device="cpu").model_dump(mode="json"),
                          cfg.model_dump(mode="json"), str(shared / "cache" / "data"),
                          str(shared / "cache" / "run"), str(shared / "cache" / "out"))  # fmt: skip
        rdzv = Rendezvous(2, 0, endpoint, "127.0.0.1", "run-1", shared)
        assert rdzv.spec_path == Rendezvous.from_env({**env, "MNAFT_NODE_INDEX": "0"}).spec_path
        with (tmp_path / "node0.log").open("w") as log:
            code = lead(spec, 1, rdzv, output=log, poll_s=0.5)
        assert code == 0, (tmp_path / "node0.log").read_text()[-4000:]
        out, _ = follower.communicate(timeout=300)
        assert follower.returncode == 0, out[-4000:]
    finally:
        if follower.poll() is None:
            follower.kill()
    metrics = json.loads((shared / "cache" / "out" / METRICS).read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 3 and metrics["sharding"] == "ddp"
