"""What a user's log shows: stages run through the CLI with output to a pipe, as `make demo > log` does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from flows.console import print_table
from mnaft_core.config import load_config
from mnaft_core.models.loading import ASSETS
from storage import ArtifactStore
from tasks.data import build_data

ROOT = Path(__file__).resolve().parents[2]
NOISE = ("Loading weights", "Writing model shards", "FutureWarning", "it/s]")


def _config(tmp_path: Path) -> Path:
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("src_text\ttgt_text\n" + "".join(f"Word {i}\tWort {i}\n" for i in range(60)))
    path = tmp_path / "pipe.yaml"
    path.write_text(
        f"name: pipe\nstore: {tmp_path / 'store'}\n"
        "model: {name_or_path: 'embedded:organism', device: cpu}\n"
        "data:\n  directions: [{src: en, tgt: de}]\n"
        f"  sources: [{{kind: table, path: {tsv}, src_lang: en, tgt_lang: de}}]\n"
        "  split: {val_fraction: 0.1, test_fraction: 0.1, max_train_per_direction: 16,"
        " max_eval_per_direction: 4}\n"
        "  render: {height: 32, max_width: 192, max_lines: 1}\n"
        "finetune:\n  settings: {steps: 1, batch_size: 4, warmup_steps: 0, checkpoint_every: 1}\n"
        "evaluate: {max_samples_per_direction: 3, significance_samples: 0, cascade: false,"
        " own_cascade: false, batch_size: 4, max_new_tokens: 8}\n"
    )
    return path


def _mnaft(*args: str, api_url: str) -> str:
    """One CLI call, stdout and stderr into one pipe (COLUMNS small, as in a narrow CI log)."""
    env = {**os.environ, "PREFECT_API_URL": api_url, "COLUMNS": "60"}
    run = subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, cwd=ROOT, timeout=600,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:]
    return run.stdout


@pytest.mark.skipif(not (ASSETS / "organism" / "config.json").is_file(), reason="organism not bootstrapped")
@pytest.mark.usefixtures("prefect_harness")
def test_stages_through_a_pipe_print_no_third_party_noise_and_whole_tables(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()  # the harness's server: no temporary server per call
    config = _config(tmp_path)
    cfg = load_config(config)
    build_data(cfg.data, cfg.store)

    finetuned = _mnaft("finetune", "-c", str(config), "--method", "full", api_url=api_url)
    key = finetuned.split("finetune (full, seed 0): ")[1].split()[0]
    evaluated = _mnaft("evaluate", "-c", str(config), "--checkpoint", f"full={key}", api_url=api_url)
    log = finetuned + evaluated
    for noise in NOISE:
        assert noise not in log, f"{noise!r} in the piped output:\n{log}"
    assert "finetune: fine-tuning (full, seed 0)" in log and "evaluate: evaluation" in log  # our progress
    rows = [ln for ln in evaluated.splitlines() if ln.startswith("| ")]
    assert rows[0] == "| system | direction | seeds | BLEU | chrF++ |", evaluated
    body = [[c.strip() for c in r.strip("|").split("|")] for r in rows[1:]]
    assert {r[0] for r in body} == {"base", "full"} and all(len(r) == 5 for r in body)
    assert all(r[1] == "en-de" and "±" in r[3] and "±" in r[4] for r in body), evaluated

    # the evaluate stage's gallery: files in its artifact, and a Markdown artifact in the UI
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    eval_key = evaluated.split("evaluation ")[1].split()[0]
    files = {f.path for f in ArtifactStore(cfg.store).open("evaluate", eval_key).manifest.files}
    assert {"gallery.html", "gallery.md", "gallery_en-de.png"} <= files
    with get_client(sync_client=True) as client:
        (art, *_) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["evaluation-gallery"])),
            sort=ArtifactSort.CREATED_DESC,
        )
    assert "| case | source | reference | base | full |" in str(art.data)
    assert "![gallery_en-de.png](data:image/png;base64," in str(art.data)  # no store server: inline


def test_terminal_tables_wrap_instead_of_cutting(capsys: pytest.CaptureFixture[str]) -> None:
    console = Console(width=30, force_terminal=True, color_system=None)
    key = "0123456789abcdef0123456789abcdef"
    print_table(("stage", "artifact key"), [("evaluate", key)], "keys", console)
    out = capsys.readouterr().out
    assert key not in out and "…" not in out  # too wide for one line: folded, not truncated
    cells = [ln.split("│")[2].strip() for ln in out.splitlines() if ln.count("│") == 3]
    assert "".join(cells) == key  # the key's pieces, in order
