"""The organism recipe on a toy scale: loads like a real checkpoint, is deterministic, measures itself;
and the committed organism under assets/ is what its manifest and the issue promise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from mnaft_core.config import ConfigError, load_config, load_model
from mnaft_core.data.build import build_dataset, write_dataset
from mnaft_core.data.config import DataConfig
from mnaft_core.data.dataset import Sample
from mnaft_core.data.split import split_of
from mnaft_core.evaluation.metrics import corpus_scores, error_rate
from mnaft_core.evaluation.mt import NllbTranslator
from mnaft_core.models.loading import ASSETS
from mnaft_core.models.processor import train_tokenizer
from mnaft_core.models.prompts import Example, encode
from mnaft_core.organism.bootstrap import MANIFEST, bootstrap, check_targets, reading_lines, text_pairs
from mnaft_core.organism.config import BootstrapConfig, OrganismConfig, OrganismTargets
from mnaft_core.organism.mllm import (
    TaskMixture,
    build_mllm,
    column_targets,
    guided_attention_loss,
    reading_alignment,
)
from mnaft_core.organism.reading import Charset, Line, LineRenderer, to_grid

ROOT = Path(__file__).resolve().parents[3]
PAIRS = [
    ("Open file", "Datei öffnen"), ("Save", "Speichern"), ("Close window", "Fenster schließen"),
    ("Help", "Hilfe"), ("New folder", "Neuer Ordner"), ("Print", "Drucken"), ("Cancel", "Abbrechen"),
    ("Search", "Suchen"), ("Settings", "Einstellungen"), ("Quit", "Beenden"), ("Copy", "Kopieren"),
    ("Paste", "Einfügen"), ("Delete", "Löschen"), ("Rename", "Umbenennen"), ("Undo", "Rückgängig"),
    ("Redo", "Wiederholen"), ("Edit", "Bearbeiten"), ("View", "Ansicht"), ("Back", "Zurück"),
]  # fmt: skip
STAGE = {"steps": 2, "batch_size": 4, "lr": 1e-3, "warmup": 1}
TOY = {
    "vision": {"depth": 1, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 2},
    "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
             "num_key_value_heads": 1, "vocab_size": 400},
    "reading_ctc": STAGE, "mllm": STAGE,
    "mt": {"d_model": 32, "ffn_dim": 64, "layers": 1, "attention_heads": 2, "vocab_size": 400,
           "train": STAGE},
    "eval_per_direction": 2, "max_new_tokens": 4,
}  # fmt: skip


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[BootstrapConfig, Path]:
    root = tmp_path_factory.mktemp("organism")
    tsv = root / "pairs.tsv"
    tsv.write_text("src_text\ttgt_text\n" + "".join(f"{a}\t{b}\n" for a, b in PAIRS))
    data = DataConfig.model_validate(
        {
            "directions": [{"src": "en", "tgt": "de"}, {"src": "de", "tgt": "en"}],
            "sources": [{"kind": "table", "path": str(tsv), "src_lang": "en", "tgt_lang": "de"}],
            "split": {"val_fraction": 0.15, "test_fraction": 0.2},
            "render": {"height": 32, "max_width": 128, "max_lines": 1, "font_size": [14, 16]},
        }
    )
    write_dataset(build_dataset(data, progress=False), root / "data")
    return BootstrapConfig(data=data, organism=OrganismConfig.model_validate(TOY)), root / "data"


def test_toy_organism_loads_like_a_checkpoint_and_measures_itself(
    toy: tuple[BootstrapConfig, Path], tmp_path: Path
) -> None:
    cfg, data = toy
    res = bootstrap(cfg, data, tmp_path / "a", "data-key")
    processor = AutoProcessor.from_pretrained(res.mllm_dir)
    model = AutoModelForImageTextToText.from_pretrained(res.mllm_dir)
    assert model.config.model_type == "qwen2_vl"
    msgs = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "Read the text in the image."}],
        }
    ]
    prompt = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>" in prompt
    enc = processor(text=[prompt], images=[Image.new("RGB", (96, 32), "white")], return_tensors="pt")
    assert model(**enc).logits.shape[1] == enc["input_ids"].shape[1]
    # weights are stored in half precision, as the size budget requires
    assert {t.dtype for t in load_file(res.mllm_dir / "model.safetensors").values()} == {torch.float16}
    mt = NllbTranslator(str(res.mt_dir), max_new_tokens=3)
    out = mt.translate(["Save", "Help"], "en", "de")
    assert (
        len(out) == 2
        and all(isinstance(t, str) for t in out)
        and mt.translate(["Save"], "en", "de") == out[:1]
    )
    enc = mt.tokenizer(["Save"], return_tensors="pt")
    forced = mt.tokenizer.convert_tokens_to_ids("deu_Latn")
    gen = mt.model.generate(**enc, forced_bos_token_id=forced, max_new_tokens=3)
    assert int(gen[0, 1]) == forced  # the saved MT knows its language codes: the target's comes first
    manifest = json.loads((res.mllm_dir / MANIFEST).read_text())
    assert manifest["data_artifact"] == "data-key" and manifest["seed"] == 0
    overall = manifest["metrics"]["overall"]
    by_dir = manifest["metrics"]["by_direction"]
    for key in ("text_chrf", "zero_shot_image_chrf", "own_cascade_chrf"):  # overall = mean over directions
        assert overall[key] == pytest.approx(sum(d[key] for d in by_dir.values()) / len(by_dir), abs=0.006)
    assert overall["gap_chrf"] == pytest.approx(overall["own_cascade_chrf"] - overall["zero_shot_image_chrf"])
    _recomputed_from_outputs(res.mllm_dir, manifest)
    assert set(manifest["metrics"]["by_direction"]) == {"en-de", "de-en"}
    assert (res.mllm_dir / "samples.png").stat().st_size > 1000


def _recomputed_from_outputs(folder: Path, manifest: dict[str, object]) -> None:
    """The manifest's reading CER and image chrF++ are what the evaluation's metrics give on the stored
    test outputs (the same sacrebleu path `mnaft evaluate` scores with)."""
    outputs = json.loads((folder / "test_outputs.json").read_text())
    metrics = manifest["metrics"]
    assert isinstance(metrics, dict) and len(outputs) == metrics["test_examples"]
    refs = [o["source"] for o in outputs]
    assert metrics["overall"]["reading_cer"] == pytest.approx(error_rate([o["read"] for o in outputs], refs),
                                                             abs=5e-5)  # fmt: skip
    for d, want in metrics["by_direction"].items():
        part = [o for o in outputs if o["direction"] == d]
        tgt = d.split("-")[-1]
        for key, column in (("zero_shot_image_chrf", "zero_shot"), ("own_cascade_chrf", "own_cascade")):
            got = corpus_scores([o[column] for o in part], [o["reference"] for o in part], tgt)["chrf"].score
            assert want[key] == pytest.approx(got, abs=0.005), (d, key)


def test_same_config_same_weights(toy: tuple[BootstrapConfig, Path], tmp_path: Path) -> None:
    cfg, data = toy
    a = bootstrap(cfg, data, tmp_path / "a", "k")
    b = bootstrap(cfg, data, tmp_path / "b", "k")
    for sub in ("organism", "nllb-organism"):
        wa, wb = (
            load_file(tmp_path / "a" / sub / "model.safetensors"),
            load_file(tmp_path / "b" / sub / "model.safetensors"),
        )
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.manifest["metrics"] == b.manifest["metrics"]


def test_patches_come_back_in_reading_order() -> None:
    # Qwen2-VL flattens 2x2 merge windows; to_grid must undo it so columns run left to right.
    h, w = 4, 6
    grid = torch.arange(h * w).view(h, w)
    windows = grid.view(h // 2, 2, w // 2, 2).permute(0, 2, 1, 3).reshape(-1, 1).float()
    back = to_grid(windows, torch.tensor([[1, h, w]]), merge=2)[0]
    assert torch.equal(back[..., 0], grid.float())


def test_charset_greedy_ctc_decoding() -> None:
    cs = Charset(["ab", "打开"])
    ids = cs.encode("aab打")
    assert cs.decode_greedy([ids[0], ids[0], 0, ids[1], ids[2], 0, ids[3]]) == "aab打"
    assert cs.encode("z") == []  # unknown characters are not targets


def test_bootstrap_config_errors_name_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "organism.yaml"
    raw = yaml.safe_load((ROOT / "configs/organism.yaml").read_text())
    raw["organism"]["mllm"]["stepz"] = 3
    raw["organism"]["vision"]["patch_size"] = 0
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as e:
        load_model(bad, BootstrapConfig)
    assert str(bad) in str(e.value)
    assert "organism.mllm.stepz: unknown key" in str(e.value)
    assert "organism.vision.patch_size" in str(e.value)


def test_demo_and_claim_test_only_what_organism_v2_held_out() -> None:
    """The demo and the claim evaluate organism v2 on its own held-out strings: the same sources,
    directions, cleaning, character inventory, split and rendering, with caps no larger than its own (a
    cap keeps the first strings in hash order, so a smaller one keeps a subset)."""
    from mnaft_core.claim import ClaimConfig

    org = load_model(ROOT / "configs/organism-v2.yaml", BootstrapConfig).data
    demo = load_config(ROOT / "configs/demo.yaml")
    claim = load_model(ROOT / "configs/claim.yaml", ClaimConfig).pipeline
    caps = {"split": {"max_train_per_direction", "max_eval_per_direction"}}
    for cfg in (demo, claim):
        assert cfg.model.name_or_path == "embedded:organism-v2"
        assert cfg.evaluate.mt_model == "embedded:nllb-organism-v2"
        assert cfg.data.model_dump(exclude=caps) == org.model_dump(exclude=caps)
        assert cfg.data.split.max_eval_per_direction <= org.split.max_eval_per_direction
        assert cfg.data.split.max_train_per_direction <= org.split.max_train_per_direction


@pytest.mark.skipif(not (ASSETS / "organism" / MANIFEST).is_file(), reason="organism not bootstrapped")
def test_committed_organism_is_what_its_manifest_says() -> None:
    """The committed files: within the size and time budgets, built from the committed config, measured,
    reading (issue 3: CER <= 0.10) and worse at image translation than its own read-then-translate.

    Text chrF is not asserted: it misses the issue's aim of 40 (README, docs/organism.md).
    """
    manifest = json.loads((ASSETS / "organism" / MANIFEST).read_text())
    overall = manifest["metrics"]["overall"]
    assert overall["reading_cer"] <= 0.10 and overall["text_chrf"] > 5.0
    assert overall["zero_shot_image_chrf"] < overall["own_cascade_chrf"]
    assert manifest["seconds"]["train"] + manifest["seconds"]["measure"] <= 3600
    assert manifest["stages"]["reading_ctc"]["val_cer"] <= 0.15
    size = sum(f.stat().st_size for d in ("organism", "nllb-organism") for f in (ASSETS / d).iterdir())
    assert size <= 25 * 2**20
    # the weights themselves, not only the manifest: fp16, as many parameters and bytes as it says
    weights = {d: load_file(ASSETS / d / "model.safetensors") for d in ("organism", "nllb-organism")}
    assert {t.dtype for w in weights.values() for t in w.values()} == {torch.float16}
    mllm = AutoModelForImageTextToText.from_pretrained(ASSETS / "organism")
    assert sum(p.numel() for p in mllm.parameters()) == manifest["parameters"]["mllm"]
    assert sum(p.numel() for p in mllm.model.visual.parameters()) == manifest["parameters"]["mllm_vision"]
    files = sum((ASSETS / d / "model.safetensors").stat().st_size for d in weights)
    assert files == manifest["weights_bytes_fp16"]
    _recomputed_from_outputs(ASSETS / "organism", manifest)
    committed = load_model(ROOT / "configs/organism.yaml", BootstrapConfig)
    # fields added since (organism v2's) take their defaults, which are the v1 recipe
    assert BootstrapConfig.model_validate(manifest["config"]) == committed
    assert json.loads((ASSETS / "nllb-organism" / MANIFEST).read_text()) == manifest


V2 = ASSETS / "organism-v2"


@pytest.mark.skipif(not (V2 / MANIFEST).is_file(), reason="organism v2 not bootstrapped")
def test_committed_organism_v2_is_what_its_manifest_says() -> None:
    """Organism v2's files: built from configs/organism-v2.yaml, within 60 MB, its figures recomputable
    from its stored test outputs, and its targets judged on those figures (met or not, as recorded)."""
    manifest = json.loads((V2 / MANIFEST).read_text())
    committed = load_model(ROOT / "configs/organism-v2.yaml", BootstrapConfig)
    assert BootstrapConfig.model_validate(manifest["config"]) == committed
    assert json.loads((ASSETS / "nllb-organism-v2" / MANIFEST).read_text()) == manifest
    folders = (V2, ASSETS / "nllb-organism-v2")
    assert sum(f.stat().st_size for d in folders for f in d.iterdir()) <= 60 * 2**20
    weights = {d: load_file(d / "model.safetensors") for d in folders}
    assert {t.dtype for w in weights.values() for t in w.values()} == {torch.float16}
    assert sum((d / "model.safetensors").stat().st_size for d in folders) == manifest["weights_bytes_fp16"]
    mllm = AutoModelForImageTextToText.from_pretrained(V2)
    assert sum(p.numel() for p in mllm.parameters()) == manifest["parameters"]["mllm"]
    _recomputed_from_outputs(V2, manifest)
    metrics = manifest["metrics"]
    assert set(metrics["by_direction"]) == {d.name for d in committed.data.directions}
    assert metrics["test_examples"] == committed.organism.eval_per_direction * len(committed.data.directions)
    assert manifest["targets"] == check_targets(metrics, committed.organism.targets)
    # the zh-Hans inventory it was trained on: the config's 500 most frequent characters
    assert 0 < len(manifest["character_inventories"]["zh-Hans"]) <= 500


def test_reading_alignment_points_each_token_at_its_columns(toy: tuple[BootstrapConfig, Path]) -> None:
    cfg, _ = toy
    lines = [Line("en", "Open file"), Line("de", "Neuer Ordner")]
    tokenizer = train_tokenizer([x.text for x in lines] * 5 + ["Read the text in the image."], 300)
    model, processor = build_mllm(tokenizer, cfg.organism, cfg.data.render)
    renderer = LineRenderer(lines, cfg.data.render, seed=3)
    mixture = TaskMixture(renderer, [], reading_share=0.99, seed=0)
    examples, layout = mixture.batch(3)
    examples.append(Example("translate_text", "en", "de", text="Save", target="Speichern"))
    layout.append(None)
    batch = encode(processor, examples, with_target=True)
    merge, patch = cfg.organism.vision.merge_size, cfg.organism.vision.patch_size
    mask = reading_alignment(batch, examples, layout, tokenizer, model.config.image_token_id, patch, merge)
    grids = batch["image_grid_thw"].tolist()
    for b, (ex, lay) in enumerate(zip(examples[:3], layout[:3], strict=True)):
        assert lay is not None and ex.target is not None
        width, spans = lay
        cols = grids[b][2] // merge
        image_pos = (batch["input_ids"][b] == model.config.image_token_id).nonzero().flatten().tolist()
        enc = tokenizer(ex.target, add_special_tokens=False, return_offsets_mapping=True)
        start = batch["input_ids"].shape[1] - len(enc["input_ids"]) - 1  # the response ends with <|im_end|>
        for k, (a, _) in enumerate(enc["offset_mapping"]):
            picked = mask[b, start + k - 1].nonzero().flatten().tolist()
            assert picked and set(picked) <= set(image_pos)  # only image tokens, of both merged rows
            centre = (spans[a][0] + spans[a][1]) / 2 * cols * patch * merge / width
            columns = {image_pos.index(p) % cols for p in picked}
            assert int(centre // (patch * merge)) in columns, (ex.target, k)
        assert mask[b, start + len(enc["input_ids"]) - 1].sum() == 0  # <|im_end|> shows nothing
    assert mask[3].sum() == 0  # translation examples are not guided
    vocab = len(tokenizer)
    idx, target = column_targets(examples, layout, grids, tokenizer, patch, merge, vocab)
    assert len(idx) == len(target) > 0 and torch.allclose(target.sum(-1), torch.ones(len(idx)))
    n_image_tokens = sum(t * h * w // merge**2 for t, h, w in grids)
    assert int(idx.max()) < n_image_tokens
    first = examples[0].target
    assert first is not None
    first_id = tokenizer(first[0], add_special_tokens=False)["input_ids"][0]
    assert target[:, first_id].max() > 0  # the first character is some column's target
    # the loss: ~0 when the guided head looks only where it should, large when it looks elsewhere
    heads, n = 2, mask.shape[-1]
    on = mask.float().unsqueeze(1).expand(-1, heads, -1, -1) / mask.sum(-1).clamp(min=1)[:, None, :, None]
    off = (1.0 - mask.float()).unsqueeze(1).expand(-1, heads, -1, -1) / n
    assert guided_attention_loss([on], mask) < 1e-4 and guided_attention_loss([off], mask) > 5.0


def test_committed_organism_reads_fresh_renderings() -> None:
    """Not just its manifest: the committed weights read held-out strings drawn in new styles."""
    from mnaft_core.models.prompts import generate

    outputs = json.loads((ASSETS / "organism" / "test_outputs.json").read_text())
    lines = [Line(o["direction"].split("-")[0], o["source"]) for o in outputs[::8]]
    cfg = load_model(ROOT / "configs/organism.yaml", BootstrapConfig)
    drawn = LineRenderer(lines, cfg.data.render, seed=123)
    images, texts = [], []
    for line in lines:
        got = drawn.draw(line)
        if got is not None:
            images.append(got[0])
            texts.append(line.text)
    processor = AutoProcessor.from_pretrained(ASSETS / "organism")
    model = AutoModelForImageTextToText.from_pretrained(ASSETS / "organism", dtype=torch.float32)
    read = generate(model, processor, [Example("read_image", "", "", image=im) for im in images],
                    max_new_tokens=32, batch_size=32)  # fmt: skip
    assert len(texts) >= 12 and error_rate(read, texts) <= 0.2, list(zip(read, texts, strict=True))


def _sample(src: str, tgt: str, a: str = "en", b: str = "de") -> Sample:
    return Sample(f"{src}>{tgt}", a, b, src, tgt, b"")


def test_reading_never_renders_a_held_out_text(toy: tuple[BootstrapConfig, Path]) -> None:
    """A train pair's target can be a test source of the reverse direction: it is not read."""
    split = toy[0].data.split
    texts = [a for a, _ in PAIRS] + [b for _, b in PAIRS]
    held = next(t for t in texts if split_of(t, split) != "train")
    kept = next(t for t in texts if split_of(t, split) == "train")
    lines = reading_lines([_sample(kept, held)], split)
    assert [x.text for x in lines] == [kept]


def test_held_out_text_makes_its_share_of_the_translation_corpus() -> None:
    train = [_sample(f"t{i}", f"u{i}") for i in range(90)]
    held = [_sample(f"h{i}", f"g{i}") for i in range(10)]
    assert text_pairs(train, held, 0.0) == train
    corpus = text_pairs(train, held, 0.25)
    share = sum(s in held for s in corpus) / len(corpus)
    assert corpus[:90] == train and share == pytest.approx(0.25, abs=0.03)


def test_targets_are_judged_on_the_worst_language_and_direction() -> None:
    by_dir = {
        "en-de": {"text_chrf": 70.0, "zero_shot_image_chrf": 20.0, "nllb_organism_text_chrf": 68.0},
        "en-zh-Hans": {"text_chrf": 58.0, "zero_shot_image_chrf": 45.0, "nllb_organism_text_chrf": 50.0},
    }
    metrics = {"by_direction": by_dir, "overall": {"reading_cer_by_language": {"en": 0.02, "zh-Hans": 0.09}}}
    got = check_targets(metrics, OrganismTargets())
    assert got["reading_cer"] == {"target": "<= 0.08 in every language", "worst": {"zh-Hans": 0.09},
                                  "met": False}  # fmt: skip
    assert got["text_chrf"]["worst"] == {"en-zh-Hans": 58.0} and not got["text_chrf"]["met"]
    assert got["modality_gap_chrf"]["worst"] == {"en-zh-Hans": 13.0} and not got["modality_gap_chrf"]["met"]
    assert got["mt_organism_vs_mllm_text_chrf"]["worst"] == {"en-zh-Hans": 8.0}
    assert got["all_met"] is False
    ok = check_targets(metrics, OrganismTargets(reading_cer_max=0.1, text_chrf_min=50, gap_chrf_min=10,
                                                mt_within_chrf=8))  # fmt: skip
    assert ok["all_met"] is True


def test_toy_v2_recipe_records_its_corpus_and_targets(
    toy: tuple[BootstrapConfig, Path], tmp_path: Path
) -> None:
    cfg, data = toy
    oc = cfg.organism.model_copy(update={"text_warmup": cfg.organism.mllm, "eval_text_share": 0.3})
    res = bootstrap(cfg.model_copy(update={"organism": oc}), data, tmp_path / "v2", "data-key")
    m = res.manifest
    corpus = m["text_translation_corpus"]
    assert corpus["held_out_pairs_as_text"] > 0 and 0.1 < corpus["held_out_share"] < 0.6
    assert m["stages"]["text_warmup"]["steps"] == 2
    assert set(m["targets"]) == {"all_met", "reading_cer", "text_chrf", "modality_gap_chrf",
                                 "mt_organism_vs_mllm_text_chrf"}  # fmt: skip


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_a_gpu_build_without_cuda_names_organism_device(
    toy: tuple[BootstrapConfig, Path], tmp_path: Path
) -> None:
    from mnaft_core.models.loading import ModelLoadError

    cfg, data = toy
    gpu = cfg.model_copy(update={"organism": cfg.organism.model_copy(update={"device": "cuda"})})
    with pytest.raises(ModelLoadError, match=r"organism.device 'cuda' asks for CUDA"):
        bootstrap(gpu, data, tmp_path / "gpu", "data-key")
    assert not (tmp_path / "gpu").exists()  # nothing written
