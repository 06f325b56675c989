"""The docs' result tables are what the generator makes of the committed result files, nothing typed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from docs import tables

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("doc", tables.DOCS)
def test_every_docs_table_is_generated_from_its_committed_file(doc: str) -> None:
    text = (ROOT / doc).read_text()
    assert tables.MARKER.search(text), f"{doc} has no generated table"
    assert tables.render(text, doc) == text, f"{doc} differs from its result files: python -m docs.tables"


def test_no_results_table_outside_the_markers() -> None:
    """A Markdown table in the results sections that no marker covers was typed by hand."""
    for doc, start in (("README.md", "## Results of `make demo`"), ("BENCHMARKS.md", "# Benchmarks")):
        text = (ROOT / doc).read_text()
        section = text[text.index(start) :]
        section = section[: section.index("\n## The model organism")] if doc == "README.md" else section
        bare = tables.MARKER.sub("", section)
        assert not re.search(r"^\| .* \|$", bare, re.M), f"{doc}: a table outside the generated markers"


def test_a_changed_result_file_makes_the_check_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bench" / "results").mkdir(parents=True)
    src = ROOT / "bench/results/generation-2026-11-23.json"
    data = json.loads(src.read_text())
    (tmp_path / "bench/results/generation-2026-11-23.json").write_text(json.dumps(data))
    marker = "<!-- table: bench bench/results/generation-2026-11-23.json main -->\n"
    doc = marker + "<!-- /table -->\n"
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    monkeypatch.setattr(tables, "DOCS", ("B.md",))
    (tmp_path / "B.md").write_text(doc)
    assert tables.main([]) == 0 and "| 56.1 |" in (tmp_path / "B.md").read_text()
    assert tables.main(["--check"]) == 0
    data["tables"]["main"]["rows"][0]["samples_per_s"] = 57.3  # a new measurement, file committed
    (tmp_path / "bench/results/generation-2026-11-23.json").write_text(json.dumps(data))
    assert tables.main(["--check"]) == 1  # the doc still shows the old figure
    assert tables.main([]) == 0 and "| 57.3 |" in (tmp_path / "B.md").read_text()


def test_a_bad_marker_names_the_document_and_file() -> None:
    with pytest.raises(tables.TableError, match=r"X.md: table 'bench bench/results/nope.json main'.*nope"):
        tables.render("<!-- table: bench bench/results/nope.json main -->\n<!-- /table -->\n", "X.md")


def test_record_turns_an_evaluation_into_a_result_file_the_tables_read(tmp_path: Path) -> None:
    import polars as pl

    from mnaft_core.evaluation.report import score_outputs, write_report
    from storage import ArtifactStore, content_key

    rows = [
        {"sample_id": f"s{i}", "system": sys, "seed": seed, "direction": "en-de", "src_lang": "en",
         "tgt_lang": "de", "source": f"Word {i}", "reference": f"Wort {i}", "hypothesis": hyp}
        for i in range(4)
        for sys, seed, hyp in (("base", 0, "Word"), ("mnaft", 0, f"Wort {i}"), ("mnaft", 1, "Wort"))
    ]  # fmt: skip
    store, key = str(tmp_path / "store"), content_key("evaluate", {}, {"t": 1}, "v")
    with ArtifactStore(store).writer("evaluate", key, params={"t": 1}) as w:
        write_report(w.dir, score_outputs(pl.DataFrame(rows)))
    out = tmp_path / "run.json"
    assert tables.main(["--record", key[:8], "--store", store, "--machine", "test box", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["machine"] == "test box" and data["samples_per_direction"] == 4
    assert data["bold_best_of"] == ["mnaft"]
    table = tables._chrf(str(out), data)
    mnaft = next(r for r in data["aggregate"] if r["system"] == "mnaft")
    assert f"| mnaft | **{mnaft['chrf_mean']:.2f} ± {mnaft['chrf_std']:.2f}** |" in table
    assert "test box" in table


def test_an_organism_with_targets_gets_per_direction_rows_and_its_shortfalls() -> None:
    from mnaft_core.organism.bootstrap import check_targets
    from mnaft_core.organism.config import OrganismTargets

    by_dir = {
        "en-zh-Hans": {"text_chrf": 61.0, "zero_shot_image_chrf": 12.5, "own_cascade_chrf": 40.0,
                       "nllb_organism_text_chrf": 58.0},
        "zh-Hans-en": {"text_chrf": 55.0, "zero_shot_image_chrf": 10.0, "own_cascade_chrf": 30.0,
                       "nllb_organism_text_chrf": 52.0},
    }  # fmt: skip
    metrics = {"by_direction": by_dir, "test_examples": 400,
               "overall": {"reading_cer_by_language": {"en": 0.03, "zh-Hans": 0.11}}}  # fmt: skip
    data = {"metrics": metrics, "targets": check_targets(metrics, OrganismTargets()),
            "machine": {"threads": 2, "torch": "2.13.0+cpu"}}  # fmt: skip
    out = tables._organism("m.json", data)
    assert "| zh-Hans-en | 0.110 | 55.0 | 10.0 | 45.0 | 30.0 | 52.0 |" in out
    assert "| en-zh-Hans | 0.030 | 61.0 | 12.5 | 48.5 | 40.0 | 58.0 |" in out
    assert "| text chrf | >= 60.0 in every direction | zh-Hans-en 55.0 | **missed** |" in out
    assert (
        "| modality gap chrf | text - zero-shot image >= 20.0 in every direction | zh-Hans-en 45.0 | met |"
        in (out)
    )
