"""An evaluation's report.json as tables (Markdown, CSV, JSON): `mnaft report` and the docs' result tables.

Every figure comes from a report (``docs/report-format.md``) or a committed result file of the same
shape; nothing here computes a score, so a table in the docs is exactly what its file says.
"""

from __future__ import annotations

import csv
import io
import json
import string
from collections.abc import Mapping, Sequence
from typing import Any

FORMATS = ("markdown", "json", "csv")
Table = tuple[list[str], list[list[str]]]  # column labels, rows of cells


class ReportError(ValueError):
    """A report (or result file) that lacks what a table needs; the message names the key."""


def _require(report: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in report:
        raise ReportError(f"{where}: no {key!r} (keys: {', '.join(sorted(report)) or 'none'})")
    return report[key]


def mean_std(mean: float | None, std: float | None, digits: int = 2) -> str:
    """``mean ± std``; the mean alone where there is no spread to show (``std`` None)."""
    if mean is None:
        return ""
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def scores_table(report: Mapping[str, Any], where: str = "report") -> Table:
    """One row per (system, direction): seeds, BLEU, chrF++ and TER as mean ± std over seeds."""
    rows = []
    for r in _require(report, "aggregate", where):
        rows.append(
            [str(r["system"]), str(r["direction"]), str(r["seeds"])]
            + [mean_std(r.get(f"{m}_mean"), r.get(f"{m}_std", 0.0)) for m in ("bleu", "chrf", "ter")]
        )
    return ["system", "direction", "seeds", "BLEU", "chrF++", "TER"], rows


def records_table(records: Sequence[Mapping[str, Any]], digits: int = 4) -> Table:
    """Any list of flat records (retention, cost, significance) as a table, columns in first-seen order."""
    cols: list[str] = []
    for r in records:
        cols += [k for k in r if k not in cols]

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.{digits}g}"
        return str(v)

    return cols, [[cell(r.get(c)) for c in cols] for r in records]


def chrf_pivot(
    aggregate: Sequence[Mapping[str, Any]],
    labels: Mapping[str, str] | None = None,
    bold_best_of: Sequence[str] = (),
) -> Table:
    """Systems down, directions across, chrF++ mean ± std: the README's headline table.

    ``bold_best_of``: the systems among which each direction's best mean is set in bold.
    """
    labels = labels or {}
    directions: list[str] = []
    systems: list[str] = []
    cells: dict[tuple[str, str], Mapping[str, Any]] = {}
    for r in aggregate:
        s, d = str(r["system"]), str(r["direction"])
        directions += [d] if d not in directions else []
        systems += [s] if s not in systems else []
        cells[s, d] = r
    best = {
        d: max(
            (cells[s, d]["chrf_mean"] for s in bold_best_of if (s, d) in cells),
            default=None,
        )
        for d in directions
    }
    rows = []
    for s in systems:
        row = [labels.get(s, s)]
        for d in directions:
            cell = cells.get((s, d))
            if cell is None:
                row.append("")
                continue
            one_seed = cell.get("seeds", 1) <= 1
            text = mean_std(cell["chrf_mean"], None if one_seed else cell.get("chrf_std"))
            bold = s in bold_best_of and cell["chrf_mean"] == best[d]
            row.append(f"**{text}**" if bold else text)
        rows.append(row)
    return ["system", *directions], rows


def template_table(columns: Sequence[Mapping[str, str]], rows: Sequence[Mapping[str, Any]]) -> Table:
    """Cells from ``{field:fmt}`` templates over each row (``columns``: ``{label, cell}``); a cell whose
    fields are missing or null is left empty, never filled in."""
    fmt = string.Formatter()
    out = []
    for row in rows:
        cells = []
        for col in columns:
            names = [n for _, n, _, _ in fmt.parse(col["cell"]) if n]
            if any(row.get(n) is None for n in names):
                cells.append("")
            else:
                cells.append(fmt.vformat(col["cell"], (), dict(row)))
        out.append(cells)
    return [c["label"] for c in columns], out


def markdown(table: Table) -> str:
    cols, rows = table

    def esc(v: str) -> str:
        return v.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def csv_text(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table[0])
    writer.writerows(table[1])
    return buf.getvalue()


REPORT_TABLES = ("scores", "retention", "cost", "significance")


def report_table(report: Mapping[str, Any], name: str, where: str = "report") -> Table:
    if name == "scores":
        return scores_table(report, where)
    if name not in REPORT_TABLES:
        raise ReportError(f"no table {name!r}; expected one of {', '.join(REPORT_TABLES)}")
    return records_table(_require(report, name, where))


def render_report(report: Mapping[str, Any], fmt: str, table: str = "scores", where: str = "report") -> str:
    """``markdown``: every non-empty table under a heading, figures rounded; ``csv``: the one ``table``
    with raw numbers; ``json``: the report's tables as records, as stored."""
    if fmt not in FORMATS:
        raise ReportError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "json":
        keep = ("title", "aggregate", "retention", "cost", "significance", "signatures", "scores")
        return json.dumps({k: report[k] for k in keep if k in report}, indent=2, ensure_ascii=False)
    if fmt == "csv":  # raw numbers, one per column, for a spreadsheet or polars
        if table not in REPORT_TABLES:
            raise ReportError(f"no table {table!r}; expected one of {', '.join(REPORT_TABLES)}")
        records = _require(report, "aggregate" if table == "scores" else table, where)
        cols = list(dict.fromkeys(k for r in records for k in r))
        return csv_text((cols, [["" if r.get(c) is None else str(r.get(c)) for c in cols] for r in records]))
    parts = [f"# {report.get('title', 'Evaluation')}", ""]
    for name in REPORT_TABLES:
        if name == "scores" or report.get(name):
            parts += [f"## {name}", "", markdown(report_table(report, name, where)), ""]
    return "\n".join(parts)
