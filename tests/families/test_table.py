"""The README's family table is generated from docs/families.json, and every row names a real test."""

from __future__ import annotations

import json

from tests.families import table
from tests.families.lookalike import FAMILIES
from tests.families.test_families import DEFAULT, NAME


def test_readme_family_table_is_the_generated_one() -> None:
    results = json.loads(table.RESULTS.read_text())
    readme = table.README.read_text()
    assert table.rewrite(readme, results) == readme, "run `python -m tests.families.table`"


def test_every_row_is_backed_by_the_family_test() -> None:
    results = json.loads(table.RESULTS.read_text())["families"]
    assert set(DEFAULT) <= set(results) <= set(FAMILIES)
    for name, row in results.items():
        assert row["test"] == f"tests/families/test_families.py::{NAME}[{name}]"
        assert row["hub_id"] == FAMILIES[name].hub_id and set(row["stages"]) == set(table.STAGES)


def test_memory_formula_orders_the_methods() -> None:
    m = json.loads(table.RESULTS.read_text())["memory"]
    for spec in m["models"].values():
        g = table.memory(spec, m["batch"], m["seq"], m["top_rate"])
        assert g["inference"] < g["profile"] < g["mnaft"] < g["full"]
        assert abs(g["inference"] - 2 * spec["params"] / table.GIB) < 1.0  # bf16 weights dominate generate
