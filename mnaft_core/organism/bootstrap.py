"""Build, measure and save both organisms: the whole of `mnaft bootstrap` below the CLI and the store.

Order: tokenizer -> vision tower reads (CTC) -> whole MLLM on reading + text translation -> NLLB-
architecture MT -> fp16 save -> reload from disk and measure on the held-out test split, so the numbers
in the manifest are those of the committed files.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers as T
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from mnaft_core.data.card import CARD_JSON
from mnaft_core.data.config import SplitConfig
from mnaft_core.data.dataset import Sample, load_samples
from mnaft_core.data.fonts import FontLibrary, detect_script
from mnaft_core.data.split import split_of
from mnaft_core.evaluation.metrics import corpus_scores, error_rate
from mnaft_core.evaluation.mt import NllbTranslator
from mnaft_core.evaluation.systems import (
    Generation,
    MllmDirect,
    ReadThenTranslate,
    inputs_of,
    translate_by_direction,
    translate_texts,
)
from mnaft_core.models.loading import pick_device
from mnaft_core.models.processor import save_processor, train_tokenizer
from mnaft_core.models.prompts import Example, instruction
from mnaft_core.organism.config import BootstrapConfig, OrganismTargets
from mnaft_core.organism.mllm import TaskMixture, build_mllm, train_mllm
from mnaft_core.organism.nllb import build_nllb, train_nllb, train_nllb_tokenizer
from mnaft_core.organism.reading import Charset, Line, LineRenderer, VisionReader

MANIFEST = "manifest.json"
SAMPLE_GRID = "samples.png"


@dataclass(frozen=True)
class BootstrapResult:
    mllm_dir: Path
    mt_dir: Path
    manifest: dict[str, Any]


def reading_lines(samples: Sequence[Sample], split: SplitConfig) -> list[Line]:
    """Every distinct (language, text) on either side of the train pairs whose text itself hashes to the
    train split: reading covers all languages, and no validation or test string is ever rendered for
    training (the target of a train pair in one direction can be a test source in the reverse one)."""
    seen = {(s.src, s.src_text) for s in samples} | {(s.tgt, s.tgt_text) for s in samples}
    return [Line(lang, text) for lang, text in sorted(seen) if split_of(text, split) == "train"]


def text_pairs(train: Sequence[Sample], held_out: Sequence[Sample], share: float) -> list[Sample]:
    """The text-translation corpus: the train pairs, plus the held-out pairs repeated so that they make
    about ``share`` of it (as text only). ``share`` 0: the train pairs alone."""
    if share <= 0 or not held_out:
        return list(train)
    repeat = max(1, round(share / (1 - share) * len(train) / len(held_out)))
    return list(train) + list(held_out) * repeat


def _tokenizer_corpus(lines: Sequence[Line], samples: Sequence[Sample]) -> list[str]:
    """The reading texts, plus the chat template's fixed text and the instructions, weighted so that BPE
    gives them whole-word tokens: every training sequence carries them, so each token saved there is
    saved at every step (the texts themselves stay near-character, which reading wants)."""
    prompts = {"You are a helpful assistant.", "system\n", "user\n", "assistant\n"}
    for s in samples[:: max(1, len(samples) // 200)]:
        for task in ("read_image", "translate_text", "translate_image"):
            img = None if task == "translate_text" else Image.new("RGB", (16, 16))
            prompts.add(instruction(Example(task, s.src, s.tgt, text="", image=img)))
    return [line.text for line in lines] + sorted(prompts) * 200


def _chrf(hyps: Sequence[str], refs: Sequence[str], lang: str) -> float:
    return round(corpus_scores(hyps, refs, lang)["chrf"].score, 2)


def measure(
    mllm_dir: Path, mt_dir: Path, test: Sequence[Sample], max_new_tokens: int, device: str = "cpu"
) -> dict[str, Any]:
    """Reading CER, text chrF, zero-shot image chrF and the own cascade's chrF, per language/direction:
    through the evaluation's systems, so these are the numbers `mnaft evaluate` would report."""
    model = T.AutoModelForImageTextToText.from_pretrained(mllm_dir, dtype=torch.float32)
    nn.Module.to(model, device)  # (transformers' typed `to` wrapper does not take a device)
    processor = T.AutoProcessor.from_pretrained(mllm_dir)
    inputs = inputs_of(test)
    gen = Generation(max_new_tokens=max_new_tokens, batch_size=32)
    own = ReadThenTranslate("own-cascade", model, processor, gen).translate(inputs)
    read, cascade = own.readings or [], own.hypotheses
    text = translate_texts(model, processor, [s.src_text for s in test], inputs, gen)
    zero = MllmDirect("zero-shot", model, processor, gen).translate(inputs).hypotheses
    mt = NllbTranslator(str(mt_dir), max_new_tokens=max_new_tokens, device=device)
    mt_out = translate_by_direction(mt, [s.src_text for s in test], inputs)
    by_dir: dict[str, list[int]] = {}
    for i, s in enumerate(test):
        by_dir.setdefault(s.direction, []).append(i)

    def pick(xs: Sequence[str], idx: Sequence[int]) -> list[str]:
        return [xs[i] for i in idx]

    per_dir: dict[str, dict[str, float]] = {}
    for d, idx in by_dir.items():
        refs, lang = pick([s.tgt_text for s in test], idx), test[idx[0]].tgt
        per_dir[d] = {
            "text_chrf": _chrf(pick(text, idx), refs, lang),
            "zero_shot_image_chrf": _chrf(pick(zero, idx), refs, lang),
            "own_cascade_chrf": _chrf(pick(cascade, idx), refs, lang),
            "nllb_organism_text_chrf": _chrf(pick(mt_out, idx), refs, lang),
            "reading_cer": round(error_rate(pick(read, idx), pick([s.src_text for s in test], idx)), 4),
        }
    per_lang: dict[str, list[int]] = {}
    for i, s in enumerate(test):
        per_lang.setdefault(s.src, []).append(i)
    src_refs = [s.src_text for s in test]
    overall: dict[str, Any] = {
        "reading_cer": round(error_rate(read, src_refs), 4),
        "reading_cer_by_language": {
            lang: round(error_rate(pick(read, idx), pick(src_refs, idx)), 4) for lang, idx in per_lang.items()
        },
        "reading_exact": round(sum(r == t for r, t in zip(read, src_refs, strict=True)) / len(test), 4),
    }
    for key in ("text_chrf", "zero_shot_image_chrf", "own_cascade_chrf", "nllb_organism_text_chrf"):
        overall[key] = round(sum(v[key] for v in per_dir.values()) / len(per_dir), 2)
    overall["gap_chrf"] = round(overall["own_cascade_chrf"] - overall["zero_shot_image_chrf"], 2)
    examples = [
        {"direction": s.direction, "source": s.src_text, "reference": s.tgt_text, "read": read[i],
         "zero_shot": zero[i], "own_cascade": cascade[i]}
        for i, s in enumerate(test)
    ]  # fmt: skip
    return {"overall": overall, "by_direction": per_dir, "test_examples": len(test), "examples": examples}


def _inventories(dataset_dir: Path) -> dict[str, str]:
    """The data card's clean.charset inventories (the characters the organism was asked to read)."""
    card = dataset_dir / CARD_JSON
    return dict(json.loads(card.read_text()).get("charset_inventories", {})) if card.is_file() else {}


def check_targets(metrics: dict[str, Any], targets: OrganismTargets) -> dict[str, Any]:
    """Each target with the measured figure it is judged on (the worst language or direction) and
    whether it was met: the manifest states the shortfall instead of hiding it."""
    by_dir = metrics["by_direction"]
    figures = {  # name -> (per language/direction, worst is the max?, limit, target text)
        "reading_cer": (metrics["overall"]["reading_cer_by_language"], True, targets.reading_cer_max,
                        f"<= {targets.reading_cer_max} in every language"),
        "text_chrf": ({d: v["text_chrf"] for d, v in by_dir.items()}, False, targets.text_chrf_min,
                      f">= {targets.text_chrf_min} in every direction"),
        "modality_gap_chrf": (
            {d: round(v["text_chrf"] - v["zero_shot_image_chrf"], 2) for d, v in by_dir.items()}, False,
            targets.gap_chrf_min, f"text - zero-shot image >= {targets.gap_chrf_min} in every direction"),
        "mt_organism_vs_mllm_text_chrf": (
            {d: round(abs(v["nllb_organism_text_chrf"] - v["text_chrf"]), 2) for d, v in by_dir.items()},
            True, targets.mt_within_chrf,
            f"|MT organism - MLLM text| <= {targets.mt_within_chrf} in every direction"),
    }  # fmt: skip
    rows: dict[str, Any] = {}
    for name, (values, upper, limit, text) in figures.items():
        worst = (max if upper else min)(values, key=lambda k: values[k])
        met = values[worst] <= limit if upper else values[worst] >= limit
        rows[name] = {"target": text, "worst": {worst: values[worst]}, "met": met}
    return {"all_met": all(r["met"] for r in rows.values()), **rows}


def sample_grid(examples: Sequence[dict[str, Any]], test: Sequence[Sample], out: Path, n: int = 10) -> Path:
    """A picture of what the organism does: the image, what it reads, its zero-shot and cascade outputs."""
    fonts = FontLibrary.discover()
    step = max(1, len(test) // n)
    rows = list(range(0, len(test), step))[:n]
    width, line_h = 760, 18
    canvas = Image.new("RGB", (width, 10 + len(rows) * (32 + 4 * line_h + 12)), "white")
    draw = ImageDraw.Draw(canvas)
    y = 10
    for i in rows:
        s, ex = test[i], examples[i]
        canvas.paste(s.pil(), (10, y))
        draw.text(
            (220, y + 8),
            f"{s.direction}   reference: {s.tgt_text}",
            fill="black",
            font=_font(fonts, s.tgt_text),
        )
        y += 36
        for label, key in (("reads", "read"), ("zero-shot", "zero_shot"), ("own cascade", "own_cascade")):
            text = ex[key]
            draw.text((10, y), f"{label}: {text}", fill=(40, 40, 160), font=_font(fonts, text + s.src_text))
            y += line_h
        y += 12
    canvas.save(out)
    return out


def _font(fonts: FontLibrary, text: str) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        f = fonts.for_text(text, detect_script(text))[0]
        return ImageFont.truetype(str(f.path), 13, index=f.index)
    except Exception:
        return ImageFont.load_default()


def bootstrap(
    cfg: BootstrapConfig,
    dataset_dir: Path,
    out_dir: Path,
    data_key: str,
    log: Callable[[dict[str, float]], None] | None = None,
) -> BootstrapResult:
    """Train both organisms on the dataset in ``dataset_dir``; write them and a manifest to ``out_dir``."""
    oc = cfg.organism
    if oc.threads:
        torch.set_num_threads(oc.threads)
    torch.manual_seed(oc.seed)
    t_start = time.perf_counter()
    train = load_samples(dataset_dir, "train")
    val = load_samples(dataset_dir, "val", limit=32)
    test = load_samples(dataset_dir, "test", limit=oc.eval_per_direction)
    held_out = load_samples(dataset_dir, "val") + load_samples(dataset_dir, "test")
    mt_pairs = text_pairs(train, held_out, oc.eval_text_share)
    lines = reading_lines(train, cfg.data.split)
    tokenizer = train_tokenizer(_tokenizer_corpus(lines, train), oc.text.vocab_size)
    device = pick_device(oc.device, "organism.device")
    model, processor = build_mllm(tokenizer, oc, cfg.data.render)
    nn.Module.to(model, device)
    renderer = LineRenderer(lines, cfg.data.render, oc.seed)
    rows = cfg.data.render.height // oc.vision.patch_size
    reader = VisionReader(
        model.model.visual, processor, Charset([x.text for x in lines]), rows, oc.vision.merge_size
    )
    stages: dict[str, Any] = {"reading_ctc": reader.train(renderer, oc.reading_ctc, log)}
    stages["reading_ctc"]["val_cer"] = round(reader.cer([s.pil() for s in val], [s.src_text for s in val]), 4)
    if oc.text_warmup is not None:
        text_only = TaskMixture(renderer, mt_pairs, 0.0, oc.seed + 7)
        stages["text_warmup"] = train_mllm(
            model, processor, text_only, oc.text_warmup, oc.vision_lr_scale, log=log, stage=4,
            label="MLLM (text translation only)",
        )  # fmt: skip
    mixture = TaskMixture(renderer, mt_pairs, oc.reading_share, oc.seed)
    stages["mllm"] = train_mllm(
        model, processor, mixture, oc.mllm, oc.vision_lr_scale, oc.attention_guide, oc.merger_guide, log
    )

    mllm_dir, mt_dir = out_dir / "organism", out_dir / "nllb-organism"
    mllm_dir.mkdir(parents=True, exist_ok=True)
    nn.Module.to(model, "cpu")
    model.half().save_pretrained(mllm_dir)
    save_processor(processor, mllm_dir)  # standard files: plain AutoProcessor loads them

    corpus = train + held_out if oc.eval_text_share > 0 else train
    mt_tok = train_nllb_tokenizer(
        [s.src_text for s in corpus] + [s.tgt_text for s in corpus], cfg.data.languages, oc.mt.vocab_size
    )
    mt_model = build_nllb(mt_tok, oc.mt)
    nn.Module.to(mt_model, device)
    stages["mt"] = train_nllb(mt_model, mt_tok, mt_pairs, oc.mt, oc.seed, log)
    mt_dir.mkdir(parents=True, exist_ok=True)
    nn.Module.to(mt_model, "cpu")
    mt_model.half().save_pretrained(mt_dir)
    mt_tok.save_pretrained(mt_dir)

    t_eval = time.perf_counter()
    metrics = measure(mllm_dir, mt_dir, test, oc.max_new_tokens, str(device))
    examples = metrics.pop("examples")
    sample_grid(examples, test, mllm_dir / SAMPLE_GRID)
    (mllm_dir / "test_outputs.json").write_text(json.dumps(examples, ensure_ascii=False, indent=1))
    size = sum(f.stat().st_size for d in (mllm_dir, mt_dir) for f in d.glob("*.safetensors"))
    manifest = {
        "seed": oc.seed,
        "data_artifact": data_key,
        "config": json.loads(cfg.model_dump_json()),
        "metrics": metrics,
        "stages": stages,
        "parameters": {
            "mllm": sum(p.numel() for p in model.parameters()),
            "mllm_vision": sum(p.numel() for p in model.model.visual.parameters()),
            "mt": sum(p.numel() for p in mt_model.parameters()),
        },
        "weights_bytes_fp16": size,
        "train_pairs": len(train),
        "text_translation_corpus": {
            "train_pairs": len(train),
            "held_out_pairs_as_text": len(held_out) if oc.eval_text_share > 0 else 0,
            "examples": len(mt_pairs),
            "held_out_share": round(1 - len(train) / len(mt_pairs), 4),
        },
        "reading_lines": len(lines),
        "character_inventories": _inventories(dataset_dir),
        "targets": check_targets(metrics, oc.targets),
        "seconds": {"train": round(t_eval - t_start, 1), "measure": round(time.perf_counter() - t_eval, 1)},
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "transformers": T.__version__,
            "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        },
    }
    for d in (mllm_dir, mt_dir):
        (d / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True))
    return BootstrapResult(mllm_dir, mt_dir, manifest)
