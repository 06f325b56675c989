"""The real thing: a Prefect server, a flow run against it, and its pages in headless Chromium.

Starts `prefect server start` (SQLite, a private PREFECT_HOME), serves the store with the read-only
store server, runs `mnaft data` against both in a subprocess, then loads the flow run's page and its
artifacts' pages in Debian's Chromium and checks what rendered (the screenshots stay in tests/output/
for a person to look at). Registers every deployment with `mnaft deploy`, and has a `mnaft worker`
process worker pull a run of one and execute it from this checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import ArtifactStore
from storage.http import store_server

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "tests" / "output"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.server
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (make install-test installs it)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api(url: str, path: str, body: dict[str, object] | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/api/{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
        "PREFECT_UI_API_URL": f"{url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if _api(url, "health") is True:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"prefect server did not come up:\n{(home / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _chromium(url: str, *, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran (and a screenshot of it)."""
    assert CHROMIUM is not None
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--hide-scrollbars", "--window-size=1400,1000", "--virtual-time-budget=20000"]  # fmt: skip
    if screenshot is not None:
        subprocess.run(
            [*args, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=120
        )
    out = subprocess.run([*args, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120)
    if screenshot is not None:
        screenshot.with_suffix(".html").write_text(out.stdout)
    return out.stdout


@needs_chromium
def test_flow_run_and_its_artifacts_render_in_the_ui(server: str, tmp_path: Path) -> None:
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("src_text\ttgt_text\n" + "".join(f"Word {i}\tWort {i}\n" for i in range(40)))
    config = tmp_path / "data.yaml"
    config.write_text(
        "data:\n  directions: [{src: en, tgt: de}]\n"
        f"  sources: [{{kind: table, path: {tsv}, src_lang: en, tgt_lang: de}}]\n"
        "  render: {height: 32, max_width: 128, max_lines: 1}\n"
    )
    store = tmp_path / "store"
    store.mkdir()
    files = store_server(store, port=0)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    store_http = f"http://127.0.0.1:{files.server_address[1]}"
    env = {**os.environ, "PREFECT_API_URL": f"{server}/api", "MNAFT_STORE_HTTP": store_http}
    try:
        run = subprocess.run(
            [sys.executable, "-m", "flows.cli", "data", "--config", str(config), "--store", str(store)],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr

        runs = _api(server, "flow_runs/filter", {})
        assert isinstance(runs, list) and len(runs) == 1 and runs[0]["state_type"] == "COMPLETED", (
            run.stdout[-3000:] + run.stderr[-3000:]
        )
        flow_run = runs[0]
        arts = _api(server, "artifacts/filter", {})
        assert isinstance(arts, list)
        by_key = {a["key"]: a for a in arts if a.get("key")}
        assert {"dataset-summary", "dataset-card", "data-samples", "data-files"} <= by_key.keys()
        picture = by_key["data-samples"]["data"]
        assert picture.startswith(f"{store_http}/data/") and picture.endswith("/samples.png")
        with urllib.request.urlopen(picture, timeout=30) as r:  # the browser can fetch it
            assert r.read(8) == b"\x89PNG\r\n\x1a\n"

        OUTPUT.mkdir(exist_ok=True)
        dom = _chromium(f"{server}/runs/flow-run/{flow_run['id']}", screenshot=OUTPUT / "ui-flow-run.png")
        assert flow_run["name"] in dom and "Completed" in dom
        card = by_key["dataset-card"]
        dom = _chromium(
            f"{server}/artifacts/artifact/{card['id']}", screenshot=OUTPUT / "ui-dataset-card.png"
        )
        assert "en-de" in dom and f'src="{store_http}/data/' in dom  # the Markdown and its pictures
        dom = _chromium(f"{server}/artifacts/artifact/{by_key['data-samples']['id']}",
                        screenshot=OUTPUT / "ui-image-artifact.png")  # fmt: skip
        assert picture in dom
        for name in ("ui-flow-run.png", "ui-dataset-card.png", "ui-image-artifact.png"):
            assert (OUTPUT / name).stat().st_size > 10_000, f"{name} looks empty"
    finally:
        files.shutdown()
        files.server_close()


def test_mnaft_deploy_registers_every_flow_on_the_live_server(server: str, tmp_path: Path) -> None:
    config = tmp_path / "deploy.yaml"
    demo = (ROOT / "configs" / "demo.yaml").read_text()
    config.write_text(demo + f"\nreprofile:\n  location: {tmp_path / 'checkpoints'}\n  cron: '15 3 * * *'\n")
    env = {**os.environ, "PREFECT_API_URL": f"{server}/api"}
    run = subprocess.run([sys.executable, "-m", "flows.cli", "deploy", "--config", str(config)],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    pools = {p["name"]: p["type"] for p in _api(server, "work_pools/filter", {})}  # type: ignore[union-attr]
    assert pools.get("cpu") == pools.get("gpu") == "process"  # created because they were missing
    deps = {d["name"]: d for d in _api(server, "deployments/filter", {})}  # type: ignore[union-attr]
    assert {"mnaft", "data", "bootstrap", "profile", "select", "finetune", "evaluate", "scan-checkpoints",
            "profile-checkpoint"} <= deps.keys()  # fmt: skip
    assert {n for n, d in deps.items() if d["work_pool_name"] == "gpu"} >= {"profile", "finetune", "evaluate"}
    (schedule,) = deps["scan-checkpoints"]["schedules"]
    assert schedule["schedule"]["cron"] == "15 3 * * *"
    automations = _api(server, "automations/filter", {})
    assert isinstance(automations, list)
    triggered = [a for a in automations if "mnaft.checkpoint.created" in json.dumps(a["trigger"])]
    assert triggered and triggered[0]["actions"][0]["deployment_id"] == deps["profile-checkpoint"]["id"]
    # the run form shows each parameter with its description (Args docstrings, pydantic Field texts)
    OUTPUT.mkdir(exist_ok=True)
    form = _chromium(f"{server}/deployments/deployment/{deps['profile']['id']}/run",
                     screenshot=OUTPUT / "ui-run-form.png")  # fmt: skip
    assert "split the shards over" in form and "dataset artifact key or unique prefix" in form
    again = subprocess.run([sys.executable, "-m", "flows.cli", "deploy", "--config", str(config)],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr  # re-deploying updates in place
    assert len(_api(server, "deployments/filter", {})) == len(deps)  # type: ignore[arg-type]


def _deployed(server: str, env: dict[str, str], needed: str) -> dict[str, dict[str, object]]:
    """The server's deployments by name, after `mnaft deploy` if ``needed`` is not among them yet
    (registered by the deploy test unless a test runs alone)."""
    deps = {d["name"]: d for d in _api(server, "deployments/filter", {})}  # type: ignore[union-attr]
    if needed not in deps:
        run = subprocess.run([sys.executable, "-m", "flows.cli", "deploy"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        deps = {d["name"]: d for d in _api(server, "deployments/filter", {})}  # type: ignore[union-attr]
    return deps


def _worker_runs(server: str, env: dict[str, str], run_id: str, log_path: Path, timeout: float) -> str:
    """Start a `mnaft worker` on the cpu pool until flow run ``run_id`` ends; its final state type."""
    log = log_path.open("w")
    worker = subprocess.Popen([sys.executable, "-m", "flows.cli", "worker", "--pool", "cpu"], env=env,
                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            state = str(_api(server, f"flow_runs/{run_id}")["state_type"])  # type: ignore[index]
            if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") or time.monotonic() > deadline:
                return state
            time.sleep(2)
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()


def test_a_process_worker_pulls_and_runs_a_deployment(server: str, tmp_path: Path) -> None:
    """What compose's workers do, here: a `mnaft worker` on pool cpu picks up a run of the `data`
    deployment (registered by `mnaft deploy`), runs it from this checkout and publishes into the store."""
    from mnaft_core.data.config import DataConfig
    from tasks.data import data_key

    env = {**os.environ, "PREFECT_API_URL": f"{server}/api", "PREFECT_WORKER_QUERY_SECONDS": "1"}
    deps = _deployed(server, env, "data")
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("src_text\ttgt_text\n" + "".join(f"Word {i}\tWort {i}\n" for i in range(30)))
    data = {"directions": [{"src": "en", "tgt": "de"}],
            "sources": [{"kind": "table", "path": str(tsv), "src_lang": "en", "tgt_lang": "de"}],
            "render": {"height": 32, "max_width": 128, "max_lines": 1}}  # fmt: skip
    store = tmp_path / "store"
    made = _api(server, f"deployments/{deps['data']['id']}/create_flow_run",
                {"parameters": {"config": data, "store": str(store)}})  # fmt: skip
    assert isinstance(made, dict)
    state = _worker_runs(server, env, str(made["id"]), tmp_path / "worker.log", 300)
    assert state == "COMPLETED", (tmp_path / "worker.log").read_text()[-4000:]
    (manifest,) = ArtifactStore(store).manifests("data")
    assert manifest.key == data_key(DataConfig.model_validate(data))  # the key the pipeline computes


def test_workers_run_a_data_import_in_parts_through_the_data_part_deployment(
    server: str, tmp_path: Path
) -> None:
    """A deployed `data` run with parts: 2 starts two runs of the `data-part` deployment, which a
    `mnaft worker` picks up next to it; the artifact it publishes is the one a one-part import makes."""
    from mnaft_core.data.config import DataConfig
    from tasks.data import build_data
    from tests import published_layouts as layouts

    env = {**os.environ, "PREFECT_API_URL": f"{server}/api", "PREFECT_WORKER_QUERY_SECONDS": "1"}
    deps = _deployed(server, env, "data-part")
    mit = layouts.mit10m(tmp_path / "mit10m")
    data = {"directions": [{"src": "zh", "tgt": "en"}, {"src": "ja", "tgt": "en"}],
            "sources": [{"kind": "mit10m", "path": str(mit), "val_fraction": 0.3}]}  # fmt: skip
    store = tmp_path / "store"
    made = _api(server, f"deployments/{deps['data']['id']}/create_flow_run",
                {"parameters": {"config": data, "store": str(store), "parts": 2}})  # fmt: skip
    assert isinstance(made, dict)
    state = _worker_runs(server, env, str(made["id"]), tmp_path / "worker.log", 420)
    assert state == "COMPLETED", (tmp_path / "worker.log").read_text()[-4000:]
    parts = _api(server, "flow_runs/filter",
                 {"flow_runs": {"deployment_id": {"any_": [deps["data-part"]["id"]]}}})  # fmt: skip
    assert isinstance(parts, list)
    mine = [r for r in parts if r["parameters"].get("store") == str(store)]
    assert sorted(r["parameters"]["part"] for r in mine) == [0, 1]
    assert all(r["state_type"] == "COMPLETED" and r["parameters"]["parts"] == 2 for r in mine)
    (manifest,) = ArtifactStore(store).manifests("data")
    one_store = tmp_path / "one-part"
    key = build_data(DataConfig.model_validate(data), str(one_store))  # one part, in this process
    assert manifest.key == key
    one = ArtifactStore(one_store).open("data", key).manifest

    def files(m: object) -> set[tuple[str, int, str]]:
        return {(f.path, f.size, f.sha256) for f in m.files}  # type: ignore[attr-defined]

    assert files(manifest) == files(one)  # the same dataset, card and pictures, byte for byte
