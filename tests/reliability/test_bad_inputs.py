"""A corpus of bad inputs: keys, manifests, truncated or missing stored files, unreadable sources.

Each must end in one clear error naming the thing at fault, publish nothing, and leave the rest of the
store as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from mnaft_core.data.types import DataError
from storage import IntegrityError
from tests.reliability.cases import record
from tests.reliability.conftest import STAGES, Tiny


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["artifacts", "show", "../../etc/passwd"], "is not a key or key prefix"),
        (["artifacts", "verify", "0123456789abcdef"], "no complete artifact with key"),
        (["artifacts", "list", "--stage", "../data"], "invalid stage name"),
    ],
    ids=["path as key", "unknown key", "path as stage"],
)
def test_bad_keys_on_the_cli(tiny: Tiny, args: list[str], expect: str) -> None:
    res = CliRunner().invoke(app, [*args, "--store", tiny.store])
    assert res.exit_code != 0
    assert expect in _one_line(res.stderr)
    record("bad keys", f"`mnaft {' '.join(args)}`", "clear error", expect)


def test_corrupt_manifest_is_named_and_skipped_by_listings(tiny: Tiny, tmp_path: Path) -> None:
    st = tiny.copy_store(tmp_path / "store")
    key = tiny.keys["select"]
    (Path(st.root) / "select" / key / "manifest.json").write_text('{"stage": "select", "key": ')
    res = CliRunner().invoke(app, ["artifacts", "verify", key, "--store", st.root])
    assert res.exit_code == 1 and "no complete artifact" in _one_line(res.stderr)
    listing = CliRunner().invoke(app, ["artifacts", "list", "--store", st.root])
    assert listing.exit_code == 0 and tiny.keys["data"] in listing.stdout
    with pytest.raises(Exception, match=rf"select/{key}/manifest.json: invalid manifest"):
        st.open("select", key)
    record("bad stored files", "corrupt manifest.json", "clear error", "ManifestError names the file")


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_truncated_or_missing_profile_chunk_stops_select(tiny: Tiny, tmp_path: Path, damage: str) -> None:
    st = tiny.copy_store(tmp_path / "store", keep=STAGES[:2])
    key = tiny.keys["profile"]
    rel = next(
        f.path for f in st.open("profile", key).manifest.files if "/c/" in f.path and "done" not in f.path
    )
    path = Path(st.root) / "profile" / key / rel
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-3])
    else:
        path.unlink()  # a Zarr reader would silently read the fill value instead
    with pytest.raises(IntegrityError, match=rel.replace(".", r"\.")):
        tiny.build("select", st.root)
    assert not st.has("select", tiny.keys["select"])
    record("bad stored files", f"profile zarr chunk {damage}d, then select", "clear error",
           "IntegrityError names the file")  # fmt: skip


def test_unreadable_table_source_is_named(tiny: Tiny, tmp_path: Path) -> None:
    bad = tmp_path / "pairs.tsv"
    bad.write_bytes(b"\x00\xff\xfe garbage \x00\n\x01\x02")
    src = tiny.data.sources[0].model_copy(update={"path": bad})
    cfg = tiny.data.model_copy(update={"sources": [src]})
    from tasks.data import build_data

    with pytest.raises(DataError, match=str(bad)):
        build_data(cfg, str(tmp_path / "store"))
    record("bad config", "table source that is not a table", "clear error", "DataError names the file")
