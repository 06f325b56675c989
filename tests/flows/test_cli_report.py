"""`mnaft report KEY --format markdown|json|csv` renders an evaluation from its stored report.json."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from flows.cli import app
from mnaft_core.evaluation.report import score_outputs, write_report
from storage import ArtifactStore, content_key

runner = CliRunner()


def _evaluation(tmp_path: Path) -> tuple[str, str]:
    rows = [
        {"sample_id": f"s{i}", "system": sys, "seed": seed, "direction": "en-de", "src_lang": "en",
         "tgt_lang": "de", "source": f"Word {i}", "reference": f"Wort {i}", "hypothesis": hyp}
        for i in range(4)
        for sys, seed, hyp in (("base", 0, "Word"), ("mnaft", 0, f"Wort {i}"), ("mnaft", 1, "Wort"))
    ]  # fmt: skip
    url = str(tmp_path / "store")
    key = content_key("evaluate", {}, {"t": 1}, "v")
    with ArtifactStore(url).writer("evaluate", key, params={"t": 1}) as w:
        write_report(w.dir, score_outputs(pl.DataFrame(rows)), retention=pl.DataFrame(
            [{"system": "base", "reading_cer": 0.1, "text_chrf": 20.0}]))  # fmt: skip
    return url, key


def test_report_in_each_format(tmp_path: Path) -> None:
    url, key = _evaluation(tmp_path)
    stored = json.loads(ArtifactStore(url).open("evaluate", key).read_bytes("report.json"))
    md = runner.invoke(app, ["report", key[:8], "--store", url])
    assert md.exit_code == 0, md.output
    mnaft = next(r for r in stored["aggregate"] if r["system"] == "mnaft")
    assert f"| mnaft | en-de | 2 | {mnaft['bleu_mean']:.2f} ± {mnaft['bleu_std']:.2f} |" in md.stdout
    assert "## retention" in md.stdout and "| base | 0.1 | 20 |" in md.stdout
    js = runner.invoke(app, ["report", key, "--store", url, "--format", "json"])
    assert json.loads(js.stdout)["aggregate"] == stored["aggregate"]
    out = runner.invoke(app, ["report", key, "--store", url, "--format", "csv"])
    parsed = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [(r["system"], float(r["chrf_mean"])) for r in parsed] == [
        (r["system"], r["chrf_mean"]) for r in stored["aggregate"]
    ]
    out = runner.invoke(app, ["report", key, "--store", url, "--format", "csv", "--table", "retention"])
    assert out.stdout.splitlines()[0] == "system,reading_cer,text_chrf"


def test_report_errors_name_the_bad_thing(tmp_path: Path) -> None:
    url, key = _evaluation(tmp_path)
    bad = runner.invoke(app, ["report", key, "--store", url, "--format", "xml"])
    assert bad.exit_code == 2 and "format 'xml'" in bad.stderr
    bad = runner.invoke(app, ["report", key, "--store", url, "--format", "csv", "--table", "nope"])
    assert bad.exit_code == 2 and "no table 'nope'" in bad.stderr
    missing = runner.invoke(app, ["report", "abcdef12", "--store", url])
    assert missing.exit_code == 2 and "abcdef12" in missing.stderr
