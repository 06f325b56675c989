"""The prepared GPU check runs end to end on the CPU with --dry-run and writes its one JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["seconds"] > 0
    rows = {r["method"]: r for r in report["train_step"]["rows"]}
    assert set(rows) == {"mnaft", "lora-r16", "full"}
    assert all(r["step_s"] > 0 and r["tokens_per_s"] > 0 for r in rows.values())
    assert rows["mnaft"]["trainable_params"] < rows["lora-r16"]["trainable_params"] < rows["full"]["params"]
    assert report["profile"]["plain_samples_per_s"] > 0 and report["profile"]["ratio"] > 0
    assert [r["exit_code"] for r in report["pipeline"]["rows"]] == [0]
    assert report["pipeline"]["rows"][0]["steps"] == 3
    assert set(report["checks"]) >= {
        "mnaft step <= 1.1 x lora-r16",
        "profiling >= 0.9 x plain",
        "pipeline ran",
    }
    assert report["checks"]["pipeline ran"] is True
