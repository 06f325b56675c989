"""Stage 2 of the organism: a Qwen2-VL-class MLLM trained on reading and text translation only.

Never on direct image translation: the organism ends up able to read (image -> text) and to translate
(text -> text) but not to do both at once, which is the modality gap MNAFT is meant to close.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import transformers as T

from mnaft_core.data.config import RenderConfig
from mnaft_core.data.dataset import Sample
from mnaft_core.models.processor import make_processor
from mnaft_core.models.prompts import Example, encode, model_inputs
from mnaft_core.organism.config import OrganismConfig, StageSpec
from mnaft_core.organism.reading import LineRenderer, Progress, lr_at, optimize


def build_mllm(
    tokenizer: T.PreTrainedTokenizerFast, cfg: OrganismConfig, render: RenderConfig
) -> tuple[T.Qwen2VLForConditionalGeneration, Any]:
    """A randomly initialised Qwen2-VL model and its image-only processor, sized by ``cfg``."""
    v, t = cfg.vision, cfg.text
    factor = v.patch_size * v.merge_size
    if render.height % factor:
        raise ValueError(f"render.height {render.height} must be a multiple of patch*merge = {factor}")
    head_dim = t.hidden_size // t.num_attention_heads
    half = head_dim // 2  # M-RoPE splits the rotary half into temporal, height and width sections
    section = [half - 2 * (half // 4), half // 4, half // 4]

    def tok_id(token: str) -> int:
        return int(tokenizer.convert_tokens_to_ids(token))  # type: ignore[arg-type]

    config = T.Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads,
            "max_position_embeddings": 1024,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section},
            "bos_token_id": None,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": v.depth,
            "embed_dim": v.embed_dim,
            "hidden_size": t.hidden_size,
            "mlp_ratio": v.mlp_ratio,
            "num_heads": v.num_heads,
            "patch_size": v.patch_size,
            "spatial_merge_size": v.merge_size,
            "temporal_patch_size": 2,
        },
        image_token_id=tok_id("<|image_pad|>"),
        video_token_id=tok_id("<|video_pad|>"),
        vision_start_token_id=tok_id("<|vision_start|>"),
        vision_end_token_id=tok_id("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    model = T.Qwen2VLForConditionalGeneration(config)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = (
        None,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )
    processor = make_processor(
        tokenizer,
        patch_size=v.patch_size,
        merge_size=v.merge_size,
        min_pixels=render.height * factor,
        max_pixels=render.height * render.max_width,
    )
    return model, processor


Spans = list[tuple[float, float]]  # each character's horizontal extent in its strip, in pixels


class TaskMixture:
    """Stage-2 batches: reading (fresh renders, every language) mixed with text translation (train pairs).

    Each example comes with its strip width and character spans (reading) or None (translation).
    """

    def __init__(self, renderer: LineRenderer, pairs: Sequence[Sample], reading_share: float, seed: int):
        self.renderer, self.pairs, self.share = renderer, list(pairs), reading_share
        self.rng = np.random.default_rng(seed + 1)

    def batch(self, n: int) -> tuple[list[Example], list[tuple[int, Spans] | None]]:
        n_read = int(self.rng.binomial(n, self.share))
        out: list[Example] = []
        layout: list[tuple[int, Spans] | None] = []
        for line, img, spans in self.renderer.sample(n_read):
            out.append(Example("read_image", line.lang, line.lang, image=img, target=line.text))
            layout.append((img.width, spans))
        for i in self.rng.integers(len(self.pairs), size=n - n_read):
            s = self.pairs[int(i)]
            out.append(Example("translate_text", s.src, s.tgt, text=s.src_text, target=s.tgt_text))
            layout.append(None)
        return out, layout


def reading_alignment(
    batch: dict[str, torch.Tensor],
    examples: Sequence[Example],
    layout: Sequence[tuple[int, Spans] | None],
    tokenizer: Any,
    image_token_id: int,
    patch: int,
    merge: int,
) -> torch.Tensor:
    """(batch, query, key) mask: the position predicting each response token of a reading example -> the
    image tokens of the columns that show that token's characters (from the renderer's spans).

    Image tokens are Qwen2-VL's merged patches in row-major order, ``patch * merge`` px wide; the response
    sits at the end of each (left-padded) row, as ``encode`` lays it out.
    """
    ids = batch["input_ids"]
    n, width = ids.shape
    mask = torch.zeros(n, width, width, dtype=torch.bool)
    grids = batch["image_grid_thw"].tolist() if "image_grid_thw" in batch else []
    column_px = patch * merge
    image_grids = iter(grids)
    for b, (ex, lay) in enumerate(zip(examples, layout, strict=True)):
        if ex.image is None:
            continue
        _, h, w = next(image_grids)
        if lay is None:
            continue
        strip_width, spans = lay
        rows, cols = h // merge, w // merge
        positions = (ids[b] == image_token_id).nonzero().flatten()
        if len(positions) != rows * cols:
            raise ValueError(f"example {b}: {len(positions)} image tokens for a {rows}x{cols} merged grid")
        scale = cols * column_px / strip_width  # the processor resized the strip to whole columns
        enc = tokenizer(f"{ex.target}{tokenizer.eos_token or ''}", add_special_tokens=False,
                        return_offsets_mapping=True)  # fmt: skip
        start = width - len(enc["input_ids"])
        for k, (a, z) in enumerate(enc["offset_mapping"]):
            if z <= a or z > len(spans):  # the end-of-turn token shows nothing
                continue
            x0, x1 = spans[a][0] * scale, spans[z - 1][1] * scale
            c0 = min(cols - 1, max(0, int(x0 // column_px)))
            c1 = min(cols - 1, max(c0, int((x1 - 1e-3) // column_px)))
            for r in range(rows):
                mask[b, start + k - 1, positions[r * cols + c0 : r * cols + c1 + 1]] = True
    return mask


def column_targets(
    examples: Sequence[Example],
    layout: Sequence[tuple[int, Spans] | None],
    grids: Sequence[Sequence[int]],
    tokenizer: Any,
    patch: int,
    merge: int,
    vocab: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which merged image tokens show ink, and a soft target over the vocabulary for each: the tokens of
    the characters under its column, weighted by how much of the column each covers.

    Returns (indices into the vision tower's merged output, (n, vocab) target rows). Image tokens of
    columns without characters, and of images that are not reading examples, get no target.
    """
    column_px = patch * merge
    char_token: dict[str, int] = {}
    index: list[int] = []
    rows_out: list[dict[int, float]] = []
    offset, image_grids = 0, iter(grids)
    for ex, lay in zip(examples, layout, strict=True):
        if ex.image is None:
            continue
        _, h, w = next(image_grids)
        rows, cols = h // merge, w // merge
        if lay is not None and ex.target is not None:
            strip_width, spans = lay
            scale = cols * column_px / strip_width
            for c in range(cols):
                weights: dict[int, float] = {}
                left, right = c * column_px, (c + 1) * column_px
                for ch, (a, z) in zip(ex.target, spans, strict=False):
                    overlap = min(z * scale, right) - max(a * scale, left)
                    if overlap > 0 and not ch.isspace():
                        if ch not in char_token:
                            char_token[ch] = tokenizer(ch, add_special_tokens=False)["input_ids"][0]
                        tid = char_token[ch]
                        weights[tid] = weights.get(tid, 0.0) + overlap
                if weights:
                    total = sum(weights.values())
                    for r in range(rows):
                        index.append(offset + r * cols + c)
                        rows_out.append({t: v / total for t, v in weights.items()})
        offset += rows * cols
    target = torch.zeros(len(index), vocab)
    for i, row in enumerate(rows_out):
        for t, v in row.items():
            target[i, t] = v
    return torch.tensor(index, dtype=torch.long), target


def guided_attention_loss(attentions: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """-log of the attention mass the first head of every layer puts on the columns it should read."""
    rows = mask.any(-1)
    if not rows.any():
        return attentions[0].new_zeros(())
    m = mask.to(attentions[0].dtype)
    losses = [-torch.log((att[:, 0] * m).sum(-1)[rows] + 1e-6).mean() for att in attentions]
    return torch.stack(losses).mean()


def train_mllm(
    model: T.Qwen2VLForConditionalGeneration,
    processor: Any,
    mixture: TaskMixture,
    spec: StageSpec,
    vision_lr_scale: float,
    guide: float = 0.0,
    merger_guide: float = 0.0,
    log: Callable[[dict[str, float]], None] | None = None,
    stage: int = 2,
    label: str = "MLLM (read + translate text)",
) -> dict[str, float]:
    """Teacher-forced next-token loss on the responses; the pretrained vision tower moves more slowly.

    With ``guide > 0``, one head per LM layer is also told where to look: the image columns that show
    the characters of the token being predicted (known from the renderer). Learning that alignment from
    the next-token loss alone is the slow part of reading; the guide makes it a supervised target.
    With ``merger_guide > 0``, each merged image token is also scored through the LM's (tied) output
    embeddings against the characters under its column, so image tokens start out looking like the
    embeddings of what they show, and attending to one is enough to copy it.
    """
    visual = set(model.model.visual.parameters())
    groups = [
        {"params": [p for p in model.parameters() if p not in visual], "scale": 1.0},
        {"params": list(visual), "scale": vision_lr_scale},
    ]
    opt = torch.optim.AdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay)
    vision_cfg: Any = model.config.vision_config
    patch, merge = int(vision_cfg.patch_size), int(vision_cfg.spatial_merge_size)
    vocab = int(model.get_output_embeddings().weight.shape[0])
    image_token_id = int(model.config.image_token_id)
    device = next(model.parameters()).device
    if guide:
        model.set_attn_implementation({"text_config": "eager"})  # attention weights are needed
    merged: list[torch.Tensor] = []
    hook = model.model.visual.merger.register_forward_hook(lambda _m, _i, out: merged.append(out))
    model.train()
    progress = Progress(stage, spec, label, log)
    try:
        for step in progress:
            examples, layout = mixture.batch(spec.batch_size)
            batch = model_inputs(encode(processor, examples, with_target=True), device)
            if guide:
                out = model(**batch, output_attentions=True)
                align = reading_alignment(batch, examples, layout, processor.tokenizer, image_token_id,
                                          patch, merge)  # fmt: skip
                loss = out.loss + guide * guided_attention_loss(out.attentions, align.to(device))
            else:
                loss = model(**batch).loss
            if merger_guide and merged and "image_grid_thw" in batch:
                grids = batch["image_grid_thw"].tolist()
                idx, target = column_targets(
                    examples, layout, grids, processor.tokenizer, patch, merge, vocab
                )
                if len(idx):
                    logp = model.lm_head(merged[-1][idx.to(device)]).log_softmax(-1)
                    loss = loss + merger_guide * -(target.to(device) * logp).sum(-1).mean()
            merged.clear()
            optimize(opt, loss, model.parameters(), lr_at(step, spec))
            progress.update(step, loss.item())
    finally:
        hook.remove()
        if guide:
            model.set_attn_implementation({"text_config": "sdpa"})
    return progress.summary()
