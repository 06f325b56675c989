"""Tiny random models of every supported family, built from transformers config classes in seconds.

They take the same code paths as real checkpoints (config classes, ``save_pretrained``, ``AutoProcessor``,
``AutoModelForImageTextToText``), so tests and smoke runs exercise the real loading code offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import transformers as T

from mnaft_core.models.processor import make_processor, save_processor, train_tokenizer

FAMILIES = ("qwen2-vl", "qwen2.5-vl", "llava-clip", "llava-siglip")
TEXT: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
MROPE: dict[str, Any] = {"rope_type": "default", "mrope_section": [2, 1, 1]}
VISION_PATCH = 8
LLAVA_IMAGE = 32
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}<image>\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if message['role'] == 'user' %}\n{% else %}</s>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT: {% endif %}"
)
# Enough text that a byte-level BPE learns instruction words and a few scripts.
CORPUS = [
    "Translate the text in the image from English to German.",
    "Translate the following text from German to English.",
    "Read the text in the image.",
    "Open the file",
    "Datei öffnen",
    "打开文件",
    "ファイルを開く",
    "You are a helpful assistant.",
]


def qwen_ids(vocab_size: int) -> dict[str, int]:
    """Special-token ids for a random model without a tokenizer (the top of the vocabulary)."""
    return {
        "image_token_id": vocab_size - 1,
        "video_token_id": vocab_size - 2,
        "vision_start_token_id": vocab_size - 3,
        "vision_end_token_id": vocab_size - 4,
    }


def tiny_model(family: str, vocab_size: int = 300, ids: dict[str, Any] | None = None) -> T.PreTrainedModel:
    """A random model of ``family`` with 2 vision and 2 language layers (MLP widths 64/48/40 vs 64)."""
    ids = ids or qwen_ids(vocab_size)
    text: dict[str, Any] = {**TEXT, "vocab_size": vocab_size}
    vision_common: dict[str, Any] = {
        "depth": 2,
        "num_heads": 4,
        "patch_size": VISION_PATCH,
        "spatial_merge_size": 2,
    }
    if family == "qwen2-vl":
        cfg: Any = T.Qwen2VLConfig(
            text_config={**text, "rope_parameters": MROPE},
            vision_config={
                **vision_common,
                "embed_dim": 32,
                "hidden_size": 32,
                "mlp_ratio": 2,
                "temporal_patch_size": 2,
            },
            **ids,
        )
        return T.Qwen2VLForConditionalGeneration(cfg)
    if family == "qwen2.5-vl":
        cfg = T.Qwen2_5_VLConfig(
            text_config={**text, "rope_parameters": MROPE},
            vision_config={
                **vision_common,
                "hidden_size": 32,
                "intermediate_size": 48,
                "out_hidden_size": 32,
                "temporal_patch_size": 2,
                "fullatt_block_indexes": [1],
                "window_size": 32,
            },
            **ids,
        )
        return T.Qwen2_5_VLForConditionalGeneration(cfg)
    if family in ("llava-clip", "llava-siglip"):
        vis: dict[str, Any] = {
            "hidden_size": 32,
            "intermediate_size": 40,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": LLAVA_IMAGE,
            "patch_size": VISION_PATCH,
        }
        siglip = family == "llava-siglip"
        vision = T.SiglipVisionConfig(**vis) if siglip else T.CLIPVisionConfig(**vis)
        cfg = T.LlavaConfig(
            vision_config=vision,
            text_config=T.LlamaConfig(**text),
            image_token_index=ids["image_token_id"],
            vision_feature_select_strategy="full" if siglip else "default",
            vision_feature_layer=-1,
        )
        return T.LlavaForConditionalGeneration(cfg)
    raise ValueError(f"unknown tiny family {family!r}; expected one of {', '.join(FAMILIES)}")


def save_tiny(family: str, out_dir: Path, seed: int = 0) -> Path:
    """Save a tiny random ``family`` model with its tokenizer and processor, loadable like a checkpoint."""
    import torch

    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    tok = train_tokenizer(CORPUS * 4, vocab_size=400)
    if family.startswith("llava"):
        tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
        tok.chat_template = LLAVA_CHAT_TEMPLATE
        image_id = tok.convert_tokens_to_ids("<image>")
        model: Any = tiny_model(family, vocab_size=len(tok), ids={"image_token_id": image_id})
        size = {"height": LLAVA_IMAGE, "width": LLAVA_IMAGE}
        if family == "llava-clip":
            ip: Any = T.CLIPImageProcessorPil(size={"shortest_edge": LLAVA_IMAGE}, crop_size=size)
        else:
            ip = T.SiglipImageProcessorPil(size=size)
        processor: Any = T.LlavaProcessor(
            image_processor=ip,
            tokenizer=tok,
            patch_size=VISION_PATCH,
            vision_feature_select_strategy=model.config.vision_feature_select_strategy,
            num_additional_image_tokens=0 if family == "llava-siglip" else 1,
            chat_template=LLAVA_CHAT_TEMPLATE,
        )
    else:
        ids: dict[str, Any] = {
            "image_token_id": tok.convert_tokens_to_ids("<|image_pad|>"),
            "video_token_id": tok.convert_tokens_to_ids("<|video_pad|>"),
            "vision_start_token_id": tok.convert_tokens_to_ids("<|vision_start|>"),
            "vision_end_token_id": tok.convert_tokens_to_ids("<|vision_end|>"),
        }
        model = tiny_model(family, vocab_size=len(tok), ids=ids)
        processor = make_processor(
            tok, patch_size=VISION_PATCH, merge_size=2, min_pixels=16 * 16, max_pixels=32 * 128
        )
    text_cfg = model.config.get_text_config()
    text_cfg.bos_token_id, text_cfg.eos_token_id, text_cfg.pad_token_id = (
        None,
        tok.eos_token_id,
        tok.pad_token_id,
    )
    model.generation_config.bos_token_id = None
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out_dir)
    save_processor(processor, out_dir)
    return out_dir
