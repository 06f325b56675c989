"""Scores from stored outputs match the sacrebleu command line; the report is complete."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from mnaft_core.evaluation.report import aggregate_seeds, score_outputs, significance, write_report

REFS = {
    "en-de": [
        "Die Datei wurde nicht gefunden",
        "Die Katze schläft auf dem Sofa",
        "Ein neues Fenster wird geöffnet",
        "Alle Einstellungen werden jetzt gespeichert",
    ],
    "en-zh-Hans": ["打开文件", "猫在睡觉", "新窗口", "保存设置"],
}
SRC = ["Open file", "The cat sleeps", "New window", "Save settings"]


def _outputs() -> pl.DataFrame:
    rows = []
    for direction, refs in REFS.items():
        tgt = direction.split("-", 1)[1]
        for seed in (0, 1):
            for system in ("mnaft", "cascade"):
                for i, ref in enumerate(refs):
                    hyp = ref if system == "mnaft" or i % 2 else ref[: len(ref) // 2]
                    if system == "cascade" and i == 3 and seed == 1:
                        hyp = ""  # an empty hypothesis is scored, not dropped
                    rows.append(
                        {
                            "sample_id": f"{direction}-{i}",
                            "system": system,
                            "seed": seed,
                            "direction": direction,
                            "src_lang": "en",
                            "tgt_lang": tgt,
                            "source": SRC[i],
                            "reference": ref,
                            "hypothesis": hyp,
                        }
                    )
    return pl.DataFrame(rows)


def test_scores_equal_the_sacrebleu_command_line(tmp_path: Path) -> None:
    df = _outputs()
    scores = score_outputs(df)
    row = scores.filter(
        (pl.col("system") == "cascade") & (pl.col("seed") == 1) & (pl.col("direction") == "en-zh-Hans")
    )
    assert row["n_empty"][0] == 1 and row["n"][0] == 4
    part = df.filter(
        (pl.col("system") == "cascade") & (pl.col("seed") == 1) & (pl.col("direction") == "en-zh-Hans")
    )
    part = part.sort("sample_id")
    (tmp_path / "hyp.txt").write_text("\n".join(part["hypothesis"].to_list()) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(part["reference"].to_list()) + "\n")
    cli = [
        sys.executable,
        "-m",
        "sacrebleu",
        str(tmp_path / "ref.txt"),
        "-i",
        str(tmp_path / "hyp.txt"),
        "-m",
        "bleu",
        "chrf",
        "--chrf-word-order",
        "2",
        "-tok",
        "zh",
        "-b",
        "-w",
        "6",
    ]
    out = json.loads(subprocess.run(cli, capture_output=True, text=True, check=True).stdout)  # [bleu, chrf]
    assert float(out[0]) == pytest.approx(row["bleu"][0], abs=1e-5)
    assert float(out[1]) == pytest.approx(row["chrf"][0], abs=1e-5)
    assert "tok:zh" in row["bleu_signature"][0]


def test_report_json_markdown_png(tmp_path: Path) -> None:
    df = _outputs()
    scores = score_outputs(df)
    agg = aggregate_seeds(scores)
    assert agg.filter(pl.col("system") == "mnaft")["bleu_mean"].to_list() == pytest.approx([100.0, 100.0])
    sig = significance(df, "mnaft", n_samples=200)
    paths = write_report(tmp_path, scores, sig, extra={"run": "test"})
    report = json.loads(paths["json"].read_text())
    assert report["version"] == 1 and "comet" not in report and report["run"] == "test"
    assert {r["system"] for r in report["aggregate"]} == {"mnaft", "cascade"}
    assert any("tok:zh" in s for s in report["signatures"]["bleu"])
    md = paths["md"].read_text()
    assert "| mnaft | en-de | 2 | 100.0 ± 0.0" in md and "Paired bootstrap" in md and "COMET" not in md
    assert paths["png"].stat().st_size > 5000


def test_bad_outputs_are_refused() -> None:
    df = _outputs()
    with pytest.raises(ValueError, match=r"lacks columns \['hypothesis'\]"):
        score_outputs(df.drop("hypothesis"))
    with pytest.raises(ValueError, match="duplicated"):
        score_outputs(pl.concat([df, df.head(1)]))
    short = df.filter(~((pl.col("system") == "cascade") & (pl.col("sample_id") == "en-de-0")))
    with pytest.raises(ValueError, match="not run on the same samples"):
        significance(short, "mnaft", n_samples=50)
