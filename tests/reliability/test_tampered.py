"""A stored file changed after publishing (same size, 4 bytes) stops the next stage: nothing is built
from it, the error names the artifact, the file and the command that inspects it."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import ArtifactStore, IntegrityError
from tests.reliability.cases import record
from tests.reliability.conftest import STAGES, Tiny

# (artifact kind, stage it belongs to, how to find the file to change, the next stage that reads it)
KINDS = [
    ("data parquet", "data", lambda files: next(f for f in files if f.endswith(".parquet")), "profile"),
    (
        "profile zarr chunk",
        "profile",
        lambda files: next(f for f in files if "/c/" in f and not f.startswith("stats.zarr/done/")),
        "select",
    ),
    ("select mask", "select", lambda files: "mask.safetensors", "finetune"),
    ("select neuron table", "select", lambda files: "neurons.parquet", "finetune"),
    ("finetune delta", "finetune", lambda files: "neuron_delta.safetensors", "evaluate"),
    ("finetune weights", "finetune", lambda files: "model/model.safetensors", "evaluate"),
    ("evaluate report", "evaluate", lambda files: "report.json", "report"),
]


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2
    data[at : at + 4] = bytes(b ^ 0xFF for b in data[at : at + 4])
    path.write_bytes(bytes(data))


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("kind", "stage", "pick", "nxt"), KINDS, ids=[k[0] for k in KINDS])
def test_tampered_file_stops_the_next_stage(
    tiny: Tiny, tmp_path: Path, kind: str, stage: str, pick, nxt: str
) -> None:
    keep = STAGES[: STAGES.index(nxt)] if nxt in STAGES else STAGES
    st = tiny.copy_store(tmp_path / "store", keep=keep)
    key = tiny.keys[stage]
    rel = pick([f.path for f in st.open(stage, key).manifest.files])
    _flip(Path(st.root) / stage / key / rel)
    assert st.has(stage, key), "same size: the artifact still looks complete"
    with pytest.raises(IntegrityError) as err:
        if nxt == "report":  # what `mnaft evaluate` prints and the UI shows: read from the report files
            st.open("evaluate", key).read_bytes(rel)
        else:
            tiny.build(nxt, str(st.root))
    msg = str(err.value)
    assert f"{stage}/{key}" in msg and rel in msg and f"mnaft artifacts verify {key}" in msg
    if nxt in STAGES:
        assert not st.has(nxt, tiny.keys[nxt]), "nothing may be published from a tampered input"
    for up in keep:  # what was stored before is still there and intact (except the tampered one)
        if up != stage:
            st.verify(up, tiny.keys[up])
    record("tampered stored file", f"{kind} ({rel}), then {nxt}", "clear error", "IntegrityError")


def test_verified_reads_accept_intact_artifacts(tiny: Tiny) -> None:
    st = ArtifactStore(tiny.store)
    for stage in STAGES:
        st.open(stage, tiny.keys[stage]).local_dir()
