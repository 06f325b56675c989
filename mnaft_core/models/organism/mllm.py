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
from mnaft_core.models.organism.config import OrganismConfig, StageSpec
from mnaft_core.models.organism.reading import LineRenderer, Progress, lr_at, optimize
from mnaft_core.models.processor import make_processor
from mnaft_core.models.prompts import Example, encode, model_inputs


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


class TaskMixture:
    """Stage-2 batches: reading (fresh renders, every language) mixed with text translation (train pairs)."""

    def __init__(self, renderer: LineRenderer, pairs: Sequence[Sample], reading_share: float, seed: int):
        self.renderer, self.pairs, self.share = renderer, list(pairs), reading_share
        self.rng = np.random.default_rng(seed + 1)

    def batch(self, n: int) -> list[Example]:
        n_read = int(self.rng.binomial(n, self.share))
        out = [
            Example("read_image", line.lang, line.lang, image=img, target=line.text)
            for line, img, _ in self.renderer.sample(n_read)
        ]
        for i in self.rng.integers(len(self.pairs), size=n - n_read):
            s = self.pairs[int(i)]
            out.append(Example("translate_text", s.src, s.tgt, text=s.src_text, target=s.tgt_text))
        return out


def train_mllm(
    model: T.Qwen2VLForConditionalGeneration,
    processor: Any,
    mixture: TaskMixture,
    spec: StageSpec,
    vision_lr_scale: float,
    log: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Teacher-forced next-token loss on the responses; the pretrained vision tower moves more slowly."""
    visual = set(model.model.visual.parameters())
    groups = [
        {"params": [p for p in model.parameters() if p not in visual], "scale": 1.0},
        {"params": list(visual), "scale": vision_lr_scale},
    ]
    opt = torch.optim.AdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay)
    model.train()
    progress = Progress(2, spec, "MLLM (read + translate text)", log)
    for step in progress:
        batch = model_inputs(encode(processor, mixture.batch(spec.batch_size), with_target=True), "cpu")
        loss = model(**batch).loss
        optimize(opt, loss, model.parameters(), lr_at(step, spec))
        progress.update(step, loss.item())
    return progress.summary()
