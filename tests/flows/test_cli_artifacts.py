"""`mnaft artifacts ...` on a store the test creates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from storage import ArtifactStore, content_key

runner = CliRunner()


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, str, str]:
    url = str(tmp_path / "store")
    st = ArtifactStore(url)
    data_key = content_key("data", {}, {"n": 1}, "v")
    with st.writer("data", data_key, params={"n": 1}) as w:
        pq.write_table(pa.table({"id": ["a", "b", "c"], "x": np.arange(3)}), w.dir / "dataset.parquet")
        w.metrics["rows"] = 3
    sel_key = content_key("select", {"data": data_key}, {"k": 2}, "v")
    with st.writer("select", sel_key, inputs={"data": data_key}, params={"k": 2}) as w:
        (w.dir / "notes.md").write_text("# notes\n")
    return url, data_key, sel_key


def test_help_lists_commands() -> None:
    out = runner.invoke(app, ["--help"])
    assert out.exit_code == 0
    assert "artifacts" in out.stdout and "config" in out.stdout


def test_list_and_filter(store: tuple[str, str, str]) -> None:
    url, data_key, sel_key = store
    out = runner.invoke(app, ["artifacts", "list", "--store", url])
    assert out.exit_code == 0, out.output
    assert data_key in out.stdout and sel_key in out.stdout
    out = runner.invoke(app, ["artifacts", "list", "--store", url, "--stage", "select"])
    assert sel_key in out.stdout and data_key not in out.stdout


def test_show_summarises_contents(store: tuple[str, str, str]) -> None:
    url, data_key, _ = store
    out = runner.invoke(app, ["artifacts", "show", data_key[:8], "--store", url])
    assert out.exit_code == 0, out.output
    assert "dataset.parquet" in out.stdout and "rows=3" in out.stdout
    out = runner.invoke(app, ["artifacts", "show", data_key, "--store", url, "--json"])
    assert '"rows": 3' in out.stdout


def test_verify_ok_then_tampered(store: tuple[str, str, str]) -> None:
    url, data_key, _ = store
    out = runner.invoke(app, ["artifacts", "verify", data_key, "--store", url])
    assert out.exit_code == 0 and "verified" in out.stdout
    f = Path(url) / "data" / data_key / "dataset.parquet"
    raw = bytearray(f.read_bytes())
    raw[10] ^= 0xFF
    f.write_bytes(bytes(raw))
    out = runner.invoke(app, ["artifacts", "verify", data_key, "--store", url])
    assert out.exit_code == 1
    assert "dataset.parquet does not match its sha256" in out.output


def test_unknown_key(store: tuple[str, str, str]) -> None:
    url, _, _ = store
    out = runner.invoke(app, ["artifacts", "show", "deadbeef00", "--store", url])
    assert out.exit_code == 1 and "no complete artifact with key 'deadbeef00'" in out.output


def test_gc_dry_run_then_yes(store: tuple[str, str, str], tmp_path: Path) -> None:
    url, data_key, sel_key = store
    st = ArtifactStore(url)
    old = content_key("select", {"data": data_key}, {"k": 1}, "v")
    with st.writer("select", old, inputs={"data": data_key}, params={"k": 1}) as w:
        (w.dir / "x").write_text("x")
    # `old` is newest now; keep the original select through a ref instead
    st.set_ref("keep-me", "select", sel_key)
    out = runner.invoke(app, ["artifacts", "gc", "--store", url, "--keep-latest", "0"])
    assert out.exit_code == 0, out.output
    assert f"would delete select/{old}" in out.stdout and "dry run" in out.stdout
    assert st.has("select", old)
    out = runner.invoke(app, ["artifacts", "gc", "--store", url, "--keep-latest", "0", "--yes"])
    assert out.exit_code == 0
    assert not st.has("select", old)
    assert st.has("select", sel_key) and st.has("data", data_key)


def test_config_command_reports_bad_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("data:\n  directions: [{src: en, tgt: de}]\n  sources: [{kind: cldr}]\n  colour: red\n")
    out = runner.invoke(app, ["config", "--config", str(p)])
    assert out.exit_code == 2
    assert str(p) in out.output and "data.colour: unknown key" in out.output


def test_the_cli_gives_a_first_ephemeral_server_time_to_migrate() -> None:
    """A fresh machine's first ephemeral server migrates its database: Prefect's 20 s were seen to fail."""
    code = (
        "import flows.cli\n"
        "from prefect.settings import get_current_settings\n"
        "print(get_current_settings().server.ephemeral.startup_timeout_seconds)"
    )
    env = {k: v for k, v in os.environ.items() if "EPHEMERAL_STARTUP" not in k}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout.strip().splitlines()[-1]) >= 60
