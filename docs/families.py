"""The README's family table and memory table (``docs.tables`` kind ``families``).

From ``docs/families.json``: per family, the test that backs every cell and the seconds it measured (run
the family tests with ``MNAFT_FAMILY_RESULTS=docs/families.json`` to refresh them), and the memory a user
needs for the real sizes, computed by formula from the architectures recorded there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "families.json"
STAGES = ("profile", "select", "finetune", "evaluate", "translate")
GIB = 1024**3


def family_rows(results: dict[str, Any]) -> list[str]:
    rows = [
        "| family | look-alike of | " + " | ".join(STAGES) + " | plain reload | seconds (2-core CPU) |",
        "| --- | --- | " + " | ".join("---" for _ in STAGES) + " | --- | --- |",
    ]
    for name, r in sorted(results["families"].items()):
        cells = ["yes" if s in r["stages"] else "no" for s in STAGES]
        total = round(sum(r["seconds"].values()))
        default = "default suite" if r.get("default") else "slow: MNAFT_FAMILIES=all"
        tail = f" | {r['plain_reload']} | {total} ({default}) |"
        rows.append(f"| {name} | `{r['hub_id']}` | " + " | ".join(cells) + tail)
    return rows


def mlp_params(model: dict[str, Any]) -> int:
    """Parameters of every MLP neuron slice: gated LM MLPs own 3 rows/columns of the hidden size a
    neuron, fc1/fc2 vision MLPs 2 (``vision.projections``)."""
    vision = model["vision"]
    lm = 3 * model["hidden"] * model["intermediate"] * model["layers"]
    return int(lm + vision["projections"] * vision["hidden"] * vision["intermediate"] * vision["layers"])


def memory(model: dict[str, Any], batch: int, seq: int, top_rate: float) -> dict[str, float]:
    """GiB by formula: bf16 weights; fp32 logits (+ softmax and gradient: x3) over the whole sequence;
    activations per layer s*b*h*(34 + 5*a*s/h) bytes (Korthikanti et al. 2022, no recomputation);
    AdamW state 16 bytes a trainable parameter (bf16 grad, fp32 master, two moments); mnaft trains at
    most ``top_rate`` of the MLP neuron parameters (LAPE's default share)."""
    n, v, h, layers, heads = model["params"], model["vocab"], model["hidden"], model["layers"], model["heads"]
    weights = 2 * n
    logits = 3 * 4 * batch * seq * v
    acts = layers * seq * batch * h * (34 + 5 * heads * seq / h)
    return {
        "inference": (weights + 4 * seq * v) / GIB,  # generate keeps the last position's logits only
        "profile": (weights + logits + acts) / GIB,
        "mnaft": (weights + logits + acts + 16 * top_rate * mlp_params(model)) / GIB,
        "full": (16 * n + logits + acts) / GIB,
    }


def memory_rows(results: dict[str, Any]) -> list[str]:
    m = results["memory"]
    b, s = m["batch"], m["seq"]
    rows = [
        f"| model | parameters | generate | profile (b={b}, s={s}) | mnaft fine-tune | full fine-tune |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, spec in m["models"].items():
        g = memory(spec, b, s, m["top_rate"])
        cells = [f"{g[k]:.1f} GiB" for k in ("inference", "profile", "mnaft", "full")]
        rows.append(f"| `{name}` | {spec['params'] / 1e9:.2f} B | " + " | ".join(cells) + " |")
    return rows


def render(results: dict[str, Any]) -> str:
    m = results["memory"]
    lines = [
        *family_rows(results),
        "",
        f"Measured {results['measured']}. Memory for the real sizes, by formula (GiB; bf16 weights, batch "
        f"{m['batch']} of {m['seq']} tokens, no gradient checkpointing: it cuts the activation term to about "
        "2·s·b·h bytes a layer; the full-vocabulary logits term 12·b·s·V bytes dominates the small models):",
        "",
        *memory_rows(results),
    ]
    return "\n".join(lines)
