"""docs/reliability.md is what the recorded results render to, and they hold every kind of case."""

from __future__ import annotations

import json

from tests.reliability.report import DOC, RESULTS, render


def test_doc_is_generated_from_the_recorded_results() -> None:
    cases = json.loads(RESULTS.read_text())
    assert DOC.read_text() == render(cases), "run `python -m tests.reliability.report`"
    groups = {c["group"] for c in cases}
    assert {
        "tampered stored file",
        "killed builder",
        "concurrent builds",
        "bad config",
        "bad input",
    } <= groups
    killed = {c["name"].split(":")[0] for c in cases if c["group"] == "killed builder"}
    assert killed == {"data", "profile", "select", "finetune", "evaluate"}
