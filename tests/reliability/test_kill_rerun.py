"""SIGKILL a stage's builder at a point, meet it as a second builder, rerun: the result is the same bytes.

For each stage a child process builds the stage's artifact and stops at a kill point; while it holds
the key, a second builder (this process) is told who holds it; then the child is killed (SIGKILL, no
cleanup). Nothing complete-looking may be left, the dead builder's lock is taken over, and the rerun
(resuming where the stage resumes: profile shards, finetune checkpoints) must publish files with the
sha256s of the uninterrupted reference run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import pytest

from storage import ArtifactStore, BuildLockedError
from tests.reliability.cases import record
from tests.reliability.conftest import STAGES, Tiny, sha256s

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    spec = json.loads(Path(sys.argv[1]).read_text())
    stage, point, store = sys.argv[2], sys.argv[3], sys.argv[4]

    def hang():
        print("READY", flush=True)
        time.sleep(600)

    if point == "before publish":  # every file staged, the manifest not yet written nor renamed
        import storage.store
        storage.store.ArtifactStore._publish = lambda self, w: hang()
    elif point == "after first shard":
        import mnaft_core.profiling.zarr_stats as zs
        real_write = zs._ShardArrays.write
        def write(self, *a, **kw):
            real_write(self, *a, **kw)
            hang()
        zs._ShardArrays.write = write
    elif point == "after first checkpoint":
        import mnaft_core.training.trainer as tr
        real_save = tr.save_checkpoint
        def save(*a, **kw):
            real_save(*a, **kw)
            hang()
        tr.save_checkpoint = save
    from tests.reliability.conftest import Tiny
    from mnaft_core.data.config import DataConfig
    from mnaft_core.evaluation.systems import EvaluateConfig
    from mnaft_core.models.config import ModelConfig
    from mnaft_core.profiling.runner import ProfileConfig
    from mnaft_core.selection.select import SelectConfig
    from mnaft_core.training.config import FinetuneConfig
    tiny = Tiny(Path(spec["root"]), spec["store"], ModelConfig(**spec["model"]), DataConfig(**spec["data"]),
                ProfileConfig(**spec["profile"]), SelectConfig(**spec["select"]),
                FinetuneConfig(**spec["finetune"]), EvaluateConfig(**spec["evaluate"]), spec["keys"])
    tiny.build(stage, store)
    print("FINISHED", flush=True)
    """
)

POINTS = [
    ("data", "before publish"),
    ("profile", "after first shard"),
    ("select", "before publish"),
    ("finetune", "after first checkpoint"),
    ("evaluate", "before publish"),
]


def _spec(tiny: Tiny, dest: Path) -> Path:
    d = asdict(tiny)
    for name in ("model", "data", "profile", "select", "finetune", "evaluate"):
        d[name] = getattr(tiny, name).model_dump(mode="json")
    d["root"] = str(tiny.root)
    dest.write_text(json.dumps(d))
    return dest


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("stage", "point"), POINTS, ids=[f"{s}: {p}" for s, p in POINTS])
def test_killed_builder_then_rerun_publishes_identical_files(
    tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str, point: str
) -> None:
    st = tiny.copy_store(tmp_path / "store", keep=STAGES[: STAGES.index(stage)])
    key = tiny.keys[stage]
    cache = tmp_path / "cache"  # the child's: its finetune checkpoints live there, as on its machine
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "MNAFT_CACHE": str(cache)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(_spec(tiny, tmp_path / "spec.json")), stage, point, st.root],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "READY", f"{line!r} {child.stderr.read() if child.stderr else ''}"
        # A second builder of the same key, told not to wait, names the one at work.
        monkeypatch.setenv("MNAFT_LOCK_WAIT", "0")
        with pytest.raises(BuildLockedError, match=f"pid {child.pid} on {socket.gethostname()}"):
            tiny.build(stage, st.root)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert not st.has(stage, key) and st.manifests(stage) == [], "a killed build must not look complete"
    assert st.debris(older_than_s=0), "its leftovers are visible to `mnaft artifacts gc`"
    for up in STAGES[: STAGES.index(stage)]:  # nothing stored before was touched
        st.verify(up, tiny.keys[up])

    monkeypatch.delenv("MNAFT_LOCK_WAIT")
    monkeypatch.setenv("MNAFT_CACHE", str(cache))  # rerun where the killed run left its checkpoints
    assert tiny.build(stage, st.root) == key  # the dead builder's lock is taken over at once
    assert sha256s(st, stage, key) == sha256s(ArtifactStore(tiny.store), stage, key)
    if stage == "finetune":
        assert st.open(stage, key).manifest.metrics["resumed_from"] == 1, "the rerun resumed"
        assert not (cache / "runs" / f"finetune-{key}").exists(), "published: its checkpoints are gone"
    record("killed builder", f"{stage}: SIGKILL {point}, rerun", "recovered",
           "nothing complete after the kill; rerun's sha256s equal the uninterrupted run's")  # fmt: skip
    record("concurrent builds", f"{stage}: second builder while the first holds the key", "clear error",
           "BuildLockedError names pid, host, since (MNAFT_LOCK_WAIT=0); by default it waits")  # fmt: skip


@pytest.mark.timeout(600)
def test_concurrent_profile_runs_build_once_and_both_get_the_result(
    tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's case: two `mnaft profile` of one key shared a staging folder; the second crashed."""
    st = tiny.copy_store(tmp_path / "store", keep=("data",))
    key = tiny.keys["profile"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    # The child pauses after its first shard (so this process surely comes in mid-build), then finishes.
    child_src = CHILD.replace("time.sleep(600)", "time.sleep(3)")
    child = subprocess.Popen(
        [sys.executable, "-c", child_src, str(_spec(tiny, tmp_path / "spec.json")), "profile",
         "after first shard", st.root],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY"
        built: list[str] = []
        real = ArtifactStore.writer

        def counted(self: ArtifactStore, stage: str, k: str, **kw: object):  # type: ignore[no-untyped-def]
            built.append(stage)
            return real(self, stage, k, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(ArtifactStore, "writer", counted)
        assert tiny.build("profile", st.root) == key  # waits for the child, then reuses its artifact
        out, err = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    assert child.returncode == 0 and "FINISHED" in out, err
    assert built == [], "the second builder built nothing"
    assert sha256s(st, "profile", key) == sha256s(ArtifactStore(tiny.store), "profile", key)
    record("concurrent builds", "profile: two builders of one key, the second waits (default)", "recovered",
           "built once; the second gets the first one's artifact")  # fmt: skip
