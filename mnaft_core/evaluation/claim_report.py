"""The claim report: claim.json (everything, for docs.tables and for checking) and claim.md (for people).

Order as docs/claim.md asks: what was run (and whether it is the pre-registered experiment), the
preconditions (the modality gap it ran on, the specificity share of the selected neurons), the decision,
then the whole table of systems, the comparisons (delta, 95% interval, raw and Holm p, MDD), retention,
the chosen learning rates with the grid, and where each mask's neurons sit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mnaft_core.evaluation.claim import ClaimResult

CLAIM_VERSION = 1
# docs/claim.md, precondition 2, says "if it is low" without a number: below this share the report says
# that mnaft vs random is expected to show nothing (fixed here before any result).
LOW_SPECIFICITY = 0.5


def _f(v: Any, fmt: str = "{:.2f}") -> str:
    return "" if v is None else fmt.format(v)


def _delta(row: Mapping[str, Any], name: str, fmt: str) -> str:
    if f"{name}_delta" not in row:
        return ""
    d, lo, hi = (row[f"{name}_delta{x}"] for x in ("", "_low", "_high"))
    return f"{fmt.format(d)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def _table(cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


COMPARISON_COLUMNS = ("vs", "delta chrF++", "95% CI", "p", "Holm p", "MDD (80% power)", "result")


def comparison_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """The baseline against each system, as text: the report's table and the CLI's print the same rows.
    A non-significant comparison says which difference it could have detected, never "no difference"."""
    rows = []
    for c in report["comparisons"]:
        verdict = (
            ("better" if c["delta"] > 0 else "worse")
            if c["significant"]
            else f"no difference of {c['mdd']:.2f} or more was detectable"
        )
        rows.append([
            c["system"], f"{c['delta']:+.2f}", f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]", f"{c['p']:.4f}",
            f"{c['p_holm']:.4f}", f"{c['mdd']:.2f}", verdict,
        ])  # fmt: skip
    return rows


def claim_json(result: ClaimResult, context: Mapping[str, Any]) -> dict[str, Any]:
    """The report's JSON: the statistics and the run's context (config, rates, grid, masks, costs)."""
    return {"version": CLAIM_VERSION, "kind": "claim", **dict(context), **result.to_json()}


def claim_markdown(report: Mapping[str, Any]) -> str:
    r = report
    md = [f"# Claim experiment: {r['name']}", ""]
    if not r["preregistered"]:
        md += [
            "**Not the pre-registered experiment** (`preregistered: false`: a toy or pilot run); its "
            "numbers decide nothing.",
            "",
        ]
    md += [
        f"Model `{r['model']}`; {len(r['directions'])} directions ({', '.join(r['directions'])}), "
        f"{', '.join(f'{n}' for n in sorted(set(r['strings'].values())))} test strings per direction; seeds "
        f"{r['seeds']}; {r['steps']} optimizer steps for every fine-tuned system; {r['resamples']} "
        "two-level bootstrap resamples (seeds and strings, paired).",
        "",
        "## Preconditions",
        "",
    ]
    pre = r.get("preconditions", {})
    gap = pre.get("modality_gap")
    md.append(
        f"- Modality gap of the base model: text chrF++ {_f(pre.get('base_text_chrf'))} vs zero-shot image "
        f"chrF++ {_f(pre.get('base_image_chrf'))}: {_f(gap)} (the design asks for at least 20)."
        if gap is not None
        else "- Modality gap: not measured (no base retention)."
    )
    share = pre.get("specificity_share")
    md.append(
        f"- Selected language-specific neurons beating the permutation null at 5% FDR: "
        f"{pre.get('specificity_significant')} of {pre.get('specificity_selected')}"
        + (f" ({100 * share:.1f}%)." if share is not None else ".")
        + (
            f" Below {LOW_SPECIFICITY:.0%}: `mnaft` vs `random` is expected to show nothing."
            if share is not None and share < LOW_SPECIFICITY
            else ""
        )
    )
    d = r["decision"]
    md += ["", f"## Decision: **{d['outcome']}**", ""]
    md += [f"- {x}" for x in d["reasons"]] + [f"- retention cost: {x}" for x in d.get("retention_cost", [])]
    md += ["", "## Systems (image translation, test split)", ""]
    lr, params = r.get("chosen_lr", {}), r.get("trainable_params", {})
    rows = [
        [
            s["system"],
            r["kinds"].get(s["system"], ""),
            f"{s['chrf']:.2f} ± {s['chrf_sd']:.2f}",
            f"[{s['ci_low']:.2f}, {s['ci_high']:.2f}]",
            s["seeds"],
            _f(lr.get(s["system"]), "{:g}"),
            params.get(s["system"], ""),
        ]
        for s in r["scores"]
    ]
    md += [
        _table(
            [
                "system",
                "kind",
                "chrF++ (mean ± sd over seeds)",
                "95% CI",
                "seeds",
                "lr",
                "trainable parameters",
            ],
            rows,
        ),
        "",
    ]
    dirs = r["directions"]
    md += ["Per direction (mean over seeds):", ""]
    md += [
        _table(
            ["system", *dirs],
            [[s["system"], *(f"{s['by_direction'][d]:.2f}" for d in dirs)] for s in r["scores"]],
        ),
        "",
    ]
    md += [f"## {r['baseline']} against each system (Holm over {len(r['comparisons'])} comparisons)", ""]
    rows = comparison_rows(r)
    md += [_table(COMPARISON_COLUMNS, rows), ""]
    if r["retention"]:
        md += ["## Retention against the base (95% intervals; not in the Holm family)", ""]
        rows = [
            [
                x["system"],
                f"{x['reading_cer']:.4f}",
                _delta(x, "reading_cer", "{:+.4f}"),
                f"{x['text_chrf']:.2f}",
                _delta(x, "text_chrf", "{:+.2f}"),
            ]
            for x in r["retention"]
        ]
        md += [
            _table(["system", "reading CER", "Δ CER vs base", "text chrF++", "Δ text chrF++ vs base"], rows)
        ]
        md += [""]
    md += [
        "## Learning rates (validation split, seed "
        f"{r['grid_seed']}; highest mean chrF++, ties to the lower rate)",
        "",
    ]
    rows = [
        [g["system"], f"{g['lr']:g}", f"{g['chrf']:.2f}", "yes" if lr.get(g["system"]) == g["lr"] else ""]
        for g in r.get("grid", [])
    ]
    md += [_table(["system", "lr", "val chrF++", "chosen"], rows), ""]
    if r.get("masks"):
        md += ["## Masks (where the selected neurons sit)", ""]
        rows = [
            [
                name,
                m["method"],
                m["neurons"].get("specific", 0),
                m["neurons"].get("agnostic", 0),
                ", ".join(f"{x['module']}:{x['layer']}" for x in m.get("selected_layers", [])),
            ]
            for name, m in r["masks"].items()
        ]
        md += [_table(["system (seeds)", "selector", "specific", "agnostic", "layers"], rows), ""]
    return "\n".join(md) + "\n"


def write_claim_report(out: Path, result: ClaimResult, context: Mapping[str, Any]) -> dict[str, Any]:
    """claim.json and claim.md in ``out``; returns the JSON."""
    report = claim_json(result, context)
    out.mkdir(parents=True, exist_ok=True)
    (out / "claim.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    (out / "claim.md").write_text(claim_markdown(report))
    return report
