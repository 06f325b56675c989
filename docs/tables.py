"""The result tables of README.md and BENCHMARKS.md, generated from committed result files.

    python -m docs.tables           # rewrite every generated table in place
    python -m docs.tables --check   # exit 1 and name the table if any differs (tests run this)
    python -m docs.tables --record KEY --store ./mnaft-store --machine "2-core ..." \
        --labels docs/results/demo-2026-11-23.json docs/results/demo-NEW.json
                                    # an evaluation's report.json -> a result file to commit

A generated table sits between two markers; what is between them is replaced on every run:

    <!-- table: KIND FILE [NAME] -->
    ...
    <!-- /table -->

KIND says how FILE (a path from the repository root) becomes a table:

- ``chrf``: an evaluation result (``docs/results/*.json``: report.json's ``aggregate`` rows plus
  ``date``, ``machine``, ``labels``) as systems x directions chrF++;
- ``retention``: the same file's ``retention`` and ``cost`` rows;
- ``organism``: the organism's ``manifest.json`` against its targets;
- ``families``: the model families x stages table and the memory-by-formula table (``docs/families.json``,
  rendered by ``docs/families.py``);
- ``claim``: the claim experiment's report (``docs/results/claim-*.json``: a claim artifact's claim.json
  plus ``date``, ``machine``; written by ``--record-claim``) as one row per system: chrF++, the
  comparison with the baseline (delta, 95% interval, Holm p, MDD), retention, the chosen rate; and the
  decision;
- ``bench``: table NAME of a benchmark result (``bench/results/*.json``: ``columns`` of ``{label,
  cell}`` templates over ``rows``).

Each table ends with a line naming its file, date and machine. Result files are written from a run's
output (``mnaft report KEY --format json``, a bench's printout) and committed; never edit a table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from docs import families
from mnaft_core.evaluation.tables import Table, chrf_pivot, markdown, template_table

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "BENCHMARKS.md", "docs/organism.md")
MARKER = re.compile(r"(<!-- table: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


class TableError(ValueError):
    """A marker or result file the generator cannot use; the message names the document and file."""


def _load(path: str) -> dict[str, Any]:
    file = ROOT / path
    if not file.is_file():
        raise TableError(f"result file {path} does not exist")
    data: dict[str, Any] = json.loads(file.read_text())
    return data


def _source(path: str, data: dict[str, Any]) -> str:
    when = f"{data['date']}, {data['machine']}" if "date" in data else data.get("machine", "")
    return f"_Source: [`{path}`]({path}) ({when})._"


def _params(n: float | None) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:.2g}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else f"{n:.0f}"


def _chrf(path: str, data: dict[str, Any]) -> str:
    table = chrf_pivot(data["aggregate"], data.get("labels"), data.get("bold_best_of", ()))
    notes = [f"chrF++ on {data['samples_per_direction']} test strings per direction"]
    if any(r.get("seeds", 1) > 1 and r.get("chrf_std") is not None for r in data["aggregate"]):
        notes.append("mean ± std over seeds for fine-tuned systems")
    elif any(r.get("seeds", 1) > 1 for r in data["aggregate"]):
        notes.append("means over seeds (spread not recorded)")
    if "ocr_cer" in data:
        notes.append(f"OCR CER of the cascade {data['ocr_cer']:.2f}")
    if "wall_time" in data:
        notes.append(f"wall time {data['wall_time']}")
    return f"{markdown(table)}\n\n{'; '.join(notes)}. {_source(path, data)}"


def _retention(path: str, data: dict[str, Any]) -> str:
    cost = {c["system"]: c for c in data.get("cost", [])}
    labels = data.get("labels", {})
    rows = []
    for r in data["retention"]:
        c = cost.get(r["system"], {})
        opt = c.get("optimizer_state_bytes")
        secs = c.get("train_seconds_mean")
        rows.append([labels.get(r["system"], r["system"]), f"{r['reading_cer']:.3f}", f"{r['text_chrf']:.1f}",
                     _params(c.get("trainable_params")), "" if opt is None else f"{opt / 1e6:.2g} MB",
                     "" if secs is None else f"{secs:.1f}"])  # fmt: skip
    cols = ["system", "reading CER", "text chrF++", "trainable parameters", "optimizer state",
            "training time per run (s)"]  # fmt: skip
    table: Table = (cols, rows)
    return f"{markdown(table)}\n\n{_source(path, data)}"


def _organism_targets(path: str, data: dict[str, Any]) -> str:
    """An organism whose manifest checks issue 18's targets: per direction, then each target."""
    m = data["metrics"]
    cer = m["overall"]["reading_cer_by_language"]
    cols = ["direction", "reading CER (source)", "text chrF++", "zero-shot image chrF++", "gap",
            "own read-then-translate chrF++", "MT organism chrF++"]  # fmt: skip
    rows = [
        [d, f"{cer[max((lang for lang in cer if d.startswith(lang + '-')), key=len)]:.3f}",
         f"{v['text_chrf']:.1f}", f"{v['zero_shot_image_chrf']:.1f}",
         f"{v['text_chrf'] - v['zero_shot_image_chrf']:.1f}", f"{v['own_cascade_chrf']:.1f}",
         f"{v['nllb_organism_text_chrf']:.1f}"]
        for d, v in m["by_direction"].items()
    ]  # fmt: skip
    targets = [
        [name.replace("_", " "), t["target"], ", ".join(f"{k} {v}" for k, v in t["worst"].items()),
         "met" if t["met"] else "**missed**"]
        for name, t in data["targets"].items() if name != "all_met"
    ]  # fmt: skip
    mach = data.get("machine", {})
    where = f"; {mach['threads']} CPU threads, torch {mach['torch']}" if "torch" in mach else ""
    note = f"_Source: [`{path}`]({path}) ({m['test_examples']} held-out test examples{where})._"
    return (
        f"{markdown((cols, rows))}\n\n{markdown((['target', 'wanted', 'worst measured', ''], targets))}"
        f"\n\n{note}"
    )


def _organism(path: str, data: dict[str, Any]) -> str:
    if "targets" in data:
        return _organism_targets(path, data)
    o = data["metrics"]["overall"]
    cer_ok = o["reading_cer"] <= 0.10
    text_ok = o["text_chrf"] >= 40
    rows = [
        ["MLLM reading CER", f"{o['reading_cer']:.3f} ({o['reading_exact']:.0%} of strings exact)",
         f"<= 0.10: {'met' if cer_ok else '**missed**'}"],
        ["MLLM text translation chrF++", f"{o['text_chrf']:.1f}",
         f"aim >= 40: {'met' if text_ok else '**missed**'}"],
        ["zero-shot image translation chrF++ vs its own read-then-translate cascade",
         f"{o['zero_shot_image_chrf']:.1f} vs {o['own_cascade_chrf']:.1f}", f"a gap: {o['gap_chrf']:.1f}"],
        ["NLLB-architecture MT organism chrF++", f"{o['nllb_organism_text_chrf']:.1f}", ""],
    ]  # fmt: skip
    m = data.get("machine", {})
    where = f"; {m['threads']} CPU threads, torch {m['torch']}" if {"threads", "torch"} <= m.keys() else ""
    note = f"_Source: [`{path}`]({path}) ({data['metrics']['test_examples']} held-out test examples{where})._"
    return f"{markdown((['measure', 'value', 'target'], rows))}\n\n{note}"


def _claim(path: str, data: dict[str, Any]) -> str:
    comp = {c["system"]: c for c in data["comparisons"]}
    ret = {r["system"]: r for r in data.get("retention", [])}
    lr = data.get("chosen_lr", {})
    rows = []
    for s in data["scores"]:
        name = s["system"]
        c, r = comp.get(name), ret.get(name, {})
        vs = "" if c is None else f"{c['delta']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]"
        rows.append(
            [
                name,
                f"{s['chrf']:.2f} ± {s['chrf_sd']:.2f}",
                vs,
                "" if c is None else f"{c['p_holm']:.4f}",
                "" if c is None else f"{c['mdd']:.2f}",
                "" if "reading_cer" not in r else f"{r['reading_cer']:.3f}",
                "" if "text_chrf" not in r else f"{r['text_chrf']:.1f}",
                "" if name not in lr else f"{lr[name]:g}",
            ]
        )
    base = data["baseline"]
    cols = [
        "system",
        "chrF++ (mean ± sd over seeds)",
        f"{base} - system [95% CI]",
        "Holm p",
        "MDD (80% power)",
        "reading CER",
        "text chrF++",
        "lr",
    ]
    n = sorted(set(data["strings"].values()))
    notes = [
        f"image translation chrF++ on {', '.join(map(str, n))} test strings per direction in "
        f"{len(data['directions'])} directions, seeds {data['seeds']}, {data['steps']} steps per system",
        f"two-level paired bootstrap ({data['resamples']} resamples), Holm over {len(data['comparisons'])} "
        "comparisons",
        f"decision: **{data['decision']['outcome']}**",
    ]
    gap = data.get("preconditions", {}).get("modality_gap")
    if gap is not None:
        notes.insert(0, f"modality gap of the base (text minus image chrF++) {gap:.1f}")
    head = (
        "" if data.get("preregistered") else "**NOT the pre-registered experiment (a toy or pilot run).**\n\n"
    )
    return f"{head}{markdown((cols, rows))}\n\n{'; '.join(notes)}. {_source(path, data)}"


def _bench(path: str, data: dict[str, Any], name: str) -> str:
    tables = data.get("tables", {})
    if name not in tables:
        raise TableError(f"{path}: no table {name!r} (tables: {', '.join(tables) or 'none'})")
    t = tables[name]
    return f"{markdown(template_table(t['columns'], t['rows']))}\n\n{_source(path, data)}"


def render_spec(spec: str) -> str:
    kind, path, *rest = spec.split()
    data = _load(path)
    if kind == "chrf":
        return _chrf(path, data)
    if kind == "retention":
        return _retention(path, data)
    if kind == "organism":
        return _organism(path, data)
    if kind == "claim":
        return _claim(path, data)
    if kind == "families":
        return families.render(data)
    if kind == "bench" and len(rest) == 1:
        return _bench(path, data, rest[0])
    raise TableError(
        f"marker {spec!r}: expected 'chrf|retention|organism|claim|families FILE' or 'bench FILE NAME'"
    )


def render(text: str, doc: str = "document") -> str:
    """``text`` with every marked table regenerated."""

    def one(m: re.Match[str]) -> str:
        try:
            body = render_spec(m["spec"])
        except (TableError, KeyError, ValueError) as err:
            raise TableError(f"{doc}: table {m['spec']!r}: {err}") from err
        return f"{m[1]}{body}\n{m[4]}"

    return MARKER.sub(one, text)


def record(key: str, store: str, machine: str, out: Path, labels_from: Path | None = None) -> dict[str, Any]:
    """A result file from an evaluate artifact: its report.json's tables plus when and where it ran."""
    from storage import ArtifactStore

    art = ArtifactStore(store).resolve(key, "evaluate")
    report = json.loads(art.read_bytes("report.json"))
    earlier = json.loads(labels_from.read_text()) if labels_from else {}
    scores = report.get("scores", [])
    data: dict[str, Any] = {
        "kind": "evaluation",
        "title": report.get("title", "evaluation"),
        "date": art.manifest.created[:10],
        "machine": machine,
        "recorded": f"written by python -m docs.tables --record from evaluate/{art.key}",
        "samples_per_direction": max((s["n"] for s in scores), default=0),
        "labels": earlier.get("labels", {}),
        "bold_best_of": sorted({r["system"] for r in report["aggregate"] if r["seeds"] > 1}),
        **{k: report[k] for k in ("aggregate", "retention", "cost") if report.get(k)},
        **({"ocr_cer": report["ocr_cer"]} if "ocr_cer" in report else {}),
    }
    out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return data


def record_claim(key: str, store: str, machine: str, out: Path) -> dict[str, Any]:
    """A result file from a claim artifact: its claim.json plus when and where it ran."""
    from storage import ArtifactStore

    art = ArtifactStore(store).resolve(key, "claim")
    report = json.loads(art.read_bytes("claim.json"))
    data = {
        **report,
        "date": art.manifest.created[:10],
        "machine": machine,
        "recorded": f"written by python -m docs.tables --record-claim from claim/{art.key}",
    }
    out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docs.tables", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report tables that differ")
    parser.add_argument(
        "--record", metavar="KEY", help="write the result file OUT from evaluate artifact KEY"
    )
    parser.add_argument(
        "--record-claim", metavar="KEY", help="write the result file OUT from claim artifact KEY"
    )
    parser.add_argument("--store", default="./mnaft-store", help="artifact store of --record")
    parser.add_argument("--machine", default="", help="where the run ran (CPU/GPU, memory), for --record")
    parser.add_argument("--labels", type=Path, help="result file whose system labels --record reuses")
    parser.add_argument("out", nargs="?", type=Path, help="result file --record writes")
    args = parser.parse_args(argv)
    if args.record_claim:
        if args.out is None or not args.machine:
            parser.error("--record-claim needs OUT and --machine")
        record_claim(args.record_claim, args.store, args.machine, args.out)
        print(f"wrote {args.out}; reference it from a <!-- table: claim {args.out} --> marker")
        return 0
    if args.record:
        if args.out is None or not args.machine:
            parser.error("--record needs OUT and --machine")
        record(args.record, args.store, args.machine, args.out, args.labels)
        print(f"wrote {args.out}; reference it from a <!-- table: chrf {args.out} --> marker")
        return 0
    stale = []
    for doc in DOCS:
        path = ROOT / doc
        old = path.read_text()
        new = render(old, doc)
        if new != old:
            stale.append(doc)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"generated tables differ from their result files in: {', '.join(stale)}; "
              "run `python -m docs.tables`", file=sys.stderr)  # fmt: skip
        return 1
    for doc in stale:
        print(f"rewrote {doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
