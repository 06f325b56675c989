"""`mnaft bootstrap` as a flow: data -> organism artifact (cached) -> installed over the embedded folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from mnaft_core.models.loading import resolve
from mnaft_core.organism.config import BootstrapConfig, OrganismConfig
from storage import ArtifactStore
from tests.mnaft_core.organism.test_organism import TOY, toy  # noqa: F401 - the toy dataset fixture


@pytest.mark.usefixtures("prefect_harness")
def test_bootstrap_flow_caches_and_installs(
    toy: tuple[BootstrapConfig, Path],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mnaft_core.models.loading as loading
    from flows.stages import bootstrap_flow

    embedded = {name: tmp_path / "assets" / name.split(":")[1] for name in loading.EMBEDDED}
    old = embedded["embedded:organism"]
    old.mkdir(parents=True)
    (old / "stale.txt").write_text("from an earlier bootstrap")
    monkeypatch.setattr(loading, "EMBEDDED", embedded)
    monkeypatch.setattr("tasks.bootstrap.EMBEDDED", embedded)
    cfg = BootstrapConfig(data=toy[0].data, organism=OrganismConfig.model_validate(TOY))
    store = str(tmp_path / "store")
    key = bootstrap_flow(cfg, store, install=True)
    assert ArtifactStore(store).has("organism", key)
    assert not (old / "stale.txt").exists() and (old / "manifest.json").is_file()
    assert resolve("embedded:nllb-organism") == str(embedded["embedded:nllb-organism"])
    # the second run is served from the store: no new organism artifact
    assert bootstrap_flow(cfg, store, install=False) == key
    assert len(ArtifactStore(store).manifests("organism")) == 1


def test_bootstrap_cli_names_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "o.yaml"
    bad.write_text("data: {directions: []}\norganism: {seed: -1}\n")
    res = CliRunner().invoke(app, ["bootstrap", "--config", str(bad), "--store", str(tmp_path / "s")])
    assert res.exit_code == 2
    assert str(bad) in res.stderr and "organism.seed" in res.stderr
