"""Look-alike checkpoints: folders laid out like the hub's smallest public model of each family.

Each is built from the family's transformers config class with the real model's special-token ids,
vocabulary size, MLP widths (the neurons mnaft profiles and masks), vision geometry (patch, merge and
image sizes, image tokens per image), chat template and processor classes; 1-2 layers per tower and
random weights, saved in the real checkpoint's dtype (bfloat16) with the hub's files: config.json,
generation_config.json, model.safetensors, tokenizer.json + tokenizer_config.json, chat template,
processor_config.json and preprocessor_config.json.

What is shrunk, and why: the hidden (residual) sizes and attention heads. Kept real, the embedding
matrices alone (vocabulary x hidden: 151,936 x 1,536 for Qwen2-VL-2B, 262,208 x 2,560 for Gemma 3 4B) are
0.2-0.7 B parameters, which a 2-core CI machine cannot build, train and save for eight families in its
time budget. The vocabulary is *not* shrunk, so every special-token id is the real one. The tokenizer is
a small byte-level BPE padded to the real vocabulary with unused filler tokens, the special tokens at
their real ids.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers as T
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from mnaft_core.models.processor import CHAT_TEMPLATE as QWEN2_TEMPLATE
from mnaft_core.models.processor import image_only
from mnaft_core.models.tiny import CORPUS

HIDDEN = 64  # shrunk residual width (see the module docstring); MLP widths stay real


def hub_tokenizer(specials: dict[int, str], named: dict[str, str]) -> T.PreTrainedTokenizerFast:
    """A byte-level BPE whose special tokens sit at ``specials``' ids (filler tokens in between)."""
    base = Tokenizer(models.BPE())
    base.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    base.train_from_iterator(CORPUS * 4 + [" ".join(CORPUS)], trainer)
    state = json.loads(base.to_str())["model"]
    vocab: dict[str, int] = dict(state["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    # a learned token on a special's id moves to a free id: two strings on one id decode ambiguously
    # (which one wins varies between runs, so the pad token could silently become a new, extra token)
    free = (i for i in range(max(specials) + 1) if i not in specials and i not in set(vocab.values()))
    for token, i in list(vocab.items()):
        if i in specials:
            vocab[token] = next(free)
    taken = set(vocab.values())
    for i in range(max(specials) + 1):
        if i in specials:
            vocab[specials[i]] = i
        elif i not in taken:
            vocab[f"<|filler_{i}|>"] = i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials.values()])
    for i, t in specials.items():
        assert tok.token_to_id(t) == i, (t, i, tok.token_to_id(t))
    roles = {k: named.pop(k) for k in ("bos_token", "eos_token", "pad_token", "unk_token") if k in named}
    return T.PreTrainedTokenizerFast(
        tokenizer_object=tok, extra_special_tokens=named or None, padding_side="left", **roles
    )


@dataclass(frozen=True)
class Family:
    name: str  # family name as in the adapters registry
    hub_id: str  # the real checkpoint this folder looks like
    build: Callable[[], tuple[Any, Any]]  # -> (model, processor)
    eos: list[int]
    # samples a step: full-vocabulary logits of long image prompts are the memory peak (InternVL: 4 tiles
    # x 256 tokens x 151,674 logits x 4 bytes = 0.7 GB a sample, about 3x that with the backward pass)
    batch: int = 2
    # LoRA's target regex where the default (``.*language_model.*``) names no module: Idefics3 calls its
    # language model ``model.text_model``
    lora_targets: str | None = None


QWEN_SPECIALS = {
    151643: "<|endoftext|>",
    151644: "<|im_start|>",
    151645: "<|im_end|>",
    151652: "<|vision_start|>",
    151653: "<|vision_end|>",
    151654: "<|vision_pad|>",
    151655: "<|image_pad|>",
    151656: "<|video_pad|>",
}
QWEN_IDS = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652}


def _qwen_tok() -> T.PreTrainedTokenizerFast:
    return hub_tokenizer(dict(QWEN_SPECIALS), {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})


def _text(intermediate: int, vocab: int, **extra: Any) -> dict[str, Any]:
    return {
        "hidden_size": HIDDEN,
        "intermediate_size": intermediate,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": HIDDEN // 4,
        "vocab_size": vocab,
        **extra,
    }


MROPE = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1_000_000.0}


def qwen2_vl() -> tuple[Any, Any]:
    """Qwen/Qwen2-VL-2B-Instruct: LM MLP 8,960; vision MLP 5,120 (embed 1,280 x mlp_ratio 4); patch 14."""
    cfg = T.Qwen2VLConfig(
        text_config=_text(8960, 151936, rope_parameters=MROPE, tie_word_embeddings=True),
        vision_config={
            "depth": 2,
            "embed_dim": HIDDEN,
            "mlp_ratio": 5120 // HIDDEN,
            "num_heads": 4,
            "hidden_size": HIDDEN,
            "patch_size": 14,
            "spatial_merge_size": 2,
        },
        tie_word_embeddings=True,
        **QWEN_IDS,
    )
    ip = T.Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, min_pixels=3136, max_pixels=12845056)
    tok = _qwen_tok()
    proc = image_only(T.Qwen2VLProcessor)(image_processor=ip, tokenizer=tok, chat_template=QWEN2_TEMPLATE)
    return T.Qwen2VLForConditionalGeneration(cfg), proc


def qwen2_5_vl() -> tuple[Any, Any]:
    """Qwen/Qwen2.5-VL-3B-Instruct: LM MLP 11,008; vision SwiGLU MLP 3,420; patch 14, window 112."""
    cfg = T.Qwen2_5_VLConfig(
        text_config=_text(11008, 151936, rope_parameters=MROPE, tie_word_embeddings=True),
        vision_config={
            "depth": 2,
            "hidden_size": HIDDEN,
            "intermediate_size": 3420,
            "num_heads": 4,
            "out_hidden_size": HIDDEN,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        tie_word_embeddings=True,
        **QWEN_IDS,
    )
    ip = T.Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, min_pixels=3136, max_pixels=12845056)
    proc = image_only(T.Qwen2_5_VLProcessor)(
        image_processor=ip, tokenizer=_qwen_tok(), chat_template=QWEN2_TEMPLATE
    )
    return T.Qwen2_5_VLForConditionalGeneration(cfg), proc


QWEN3_TEMPLATE = QWEN2_TEMPLATE.replace(
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}",
    "",
)


def qwen3_vl() -> tuple[Any, Any]:
    """Qwen/Qwen3-VL-2B-Instruct: LM MLP 6,144; vision MLP 4,096 (GELU fc1/fc2); patch 16; deepstack."""
    mrope = {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True, "rope_theta": 5e6}
    cfg = T.Qwen3VLConfig(
        text_config=_text(6144, 151936, rope_parameters=mrope, tie_word_embeddings=True),
        vision_config={
            "depth": 2,
            "hidden_size": HIDDEN,
            "intermediate_size": 4096,
            "num_heads": 4,
            "out_hidden_size": HIDDEN,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [0],
        },
        tie_word_embeddings=True,
        **QWEN_IDS,
    )
    ip = T.Qwen2VLImageProcessorPil(
        patch_size=16,
        merge_size=2,
        min_pixels=4096,
        max_pixels=16777216,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    proc = image_only(T.Qwen3VLProcessor)(
        image_processor=ip, tokenizer=_qwen_tok(), chat_template=QWEN3_TEMPLATE
    )
    return T.Qwen3VLForConditionalGeneration(cfg), proc


LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}"
    "{% endif %}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def llava_1_5() -> tuple[Any, Any]:
    """llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336 (MLP 4,096; 576 image tokens); Llama MLP 11,008."""
    tok = hub_tokenizer(
        {0: "<unk>", 1: "<s>", 2: "</s>", 32000: "<image>", 32001: "<pad>"},
        {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "image_token": "<image>",
        },
    )
    vision = T.CLIPVisionConfig(
        hidden_size=HIDDEN,
        intermediate_size=4096,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=336,
        patch_size=14,
        projection_dim=HIDDEN,
    )
    cfg = T.LlavaConfig(
        vision_config=vision,
        text_config=T.LlamaConfig(**_text(11008, 32064), pad_token_id=32001),
        image_token_index=32000,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        pad_token_id=32001,
    )
    ip = T.CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    proc = T.LlavaProcessor(
        image_processor=ip,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    return T.LlavaForConditionalGeneration(cfg), proc


GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for item in message['content'] %}{% if item['type'] == 'image' %}<start_of_image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def gemma3() -> tuple[Any, Any]:
    """google/gemma-3-4b-it: SigLIP so400m/14-896 (MLP 4,304; 256 image tokens); Gemma MLP 10,240."""
    tok = hub_tokenizer(
        {
            0: "<pad>",
            1: "<eos>",
            2: "<bos>",
            3: "<unk>",
            105: "<start_of_turn>",
            106: "<end_of_turn>",
            255999: "<start_of_image>",
            256000: "<end_of_image>",
            262144: "<image_soft_token>",
        },
        {
            "bos_token": "<bos>",
            "eos_token": "<eos>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    cfg = T.Gemma3Config(
        vision_config=T.SiglipVisionConfig(
            hidden_size=HIDDEN,
            intermediate_size=4304,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=896,
            patch_size=14,
        ).to_dict(),
        text_config=T.Gemma3TextConfig(**_text(10240, 262208), sliding_window=512).to_dict(),
        mm_tokens_per_image=256,
        boi_token_index=255999,
        eoi_token_index=256000,
        image_token_index=262144,
    )
    ip = T.Gemma3ImageProcessorPil(
        size={"height": 896, "width": 896}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    proc = T.Gemma3Processor(
        image_processor=ip, tokenizer=tok, chat_template=GEMMA3_TEMPLATE, image_seq_length=256
    )
    return T.Gemma3ForConditionalGeneration(cfg), proc


INTERNVL_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def internvl() -> tuple[Any, Any]:
    """OpenGVLab/InternVL3-1B-hf: InternViT-300M/14-448 (MLP 4,096; 256 tokens a tile); Qwen2.5 MLP 4,864."""
    specials = {**QWEN_SPECIALS, 151665: "<img>", 151666: "</img>", 151667: "<IMG_CONTEXT>"}
    tok = hub_tokenizer(
        specials,
        {
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<|video_pad|>",
        },
    )
    cfg = T.InternVLConfig(
        vision_config={
            "hidden_size": HIDDEN,
            "intermediate_size": 4096,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": [448, 448],
            "patch_size": [14, 14],
        },
        text_config=T.Qwen2Config(**_text(4864, 151674)).to_dict(),
        image_token_id=151667,
        downsample_ratio=0.5,
    )
    ip = T.GotOcr2ImageProcessorPil(
        size={"height": 448, "width": 448},
        crop_to_patches=True,
        min_patches=1,
        max_patches=12,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    proc = image_only(T.InternVLProcessor)(
        image_processor=ip, tokenizer=tok, image_seq_length=256, chat_template=INTERNVL_TEMPLATE
    )
    return T.InternVLForConditionalGeneration(cfg), proc


ONEVISION_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}"
    "{% endfor %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\n' + content['text'] }}{% endfor %}{% endif %}{{ '<|im_end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def llava_onevision() -> tuple[Any, Any]:
    """llava-hf/llava-onevision-qwen2-0.5b-ov-hf: SigLIP so400m/14-384 (MLP 4,304; 729 tokens a crop,
    anyres_max_9 over the 36 grid pinpoints, "full" features of the last layer); Qwen2-0.5B MLP 4,864.

    From transformers' ``LlavaOnevisionConfig`` defaults (its docstring names the OneVision checkpoints):
    vision widths and geometry, image/video token ids 151646/151647, feature strategy, pinpoints. From
    memory of the hub repo: vocabulary 152,000, tied embeddings, the chat template (``<|im_start|>role ``,
    images first, then ``\\n`` + text), LlavaOnevisionProcessor with LlavaOnevisionImageProcessor.
    """
    specials = {**QWEN_SPECIALS, 151646: "<image>", 151647: "<video>"}
    tok = hub_tokenizer(
        specials,
        {
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "image_token": "<image>",
            "video_token": "<video>",
        },
    )
    cfg = T.LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": HIDDEN,
            "intermediate_size": 4304,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 384,
            "patch_size": 14,
            "vision_use_head": False,
        },
        text_config=T.Qwen2Config(**_text(4864, 152000), tie_word_embeddings=True).to_dict(),
        image_token_index=151646,
        video_token_index=151647,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=True,
    )
    ip = T.LlavaOnevisionImageProcessorPil(
        size={"height": 384, "width": 384},
        image_grid_pinpoints=cfg.image_grid_pinpoints,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    proc = image_only(T.LlavaOnevisionProcessor)(
        image_processor=ip,
        tokenizer=tok,
        num_image_tokens=729,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        chat_template=ONEVISION_TEMPLATE,
    )
    return T.LlavaOnevisionForConditionalGeneration(cfg), proc


SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def idefics3() -> tuple[Any, Any]:
    """HuggingFaceTB/SmolVLM-256M-Instruct (Idefics3ForConditionalGeneration): SigLIP base/16-512 (MLP
    3,072; pixel shuffle x4: 64 tokens a 512 tile, the image split into tiles plus a global one); SmolLM2
    MLP 1,536, vocabulary 49,280.

    From transformers' Idefics3 processor: the token strings it uses (``<fake_token_around_image>``,
    ``<image>``, ``<global-img>``, ``<row_i_col_j>``, ``<end_of_utterance>``). From memory of the hub repo:
    their ids (``<global-img>`` 49152, the 36 row/column tokens 49153-49188, 49189, 49190, 49279 — the
    ids are consistent with that order), SmolLM2's own specials at 0-2, vocabulary 49,280, image_seq_len
    64, the image processor's sizes (longest edge 2,048, tiles of 512, mean/std 0.5) and the chat
    template (``User:<image>...<end_of_utterance>``, ``Assistant:``).
    """
    specials = {0: "<|endoftext|>", 1: "<|im_start|>", 2: "<|im_end|>", 49152: "<global-img>"}
    grid = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    specials |= {49153 + i: t for i, t in enumerate(grid)}
    specials |= {49189: "<fake_token_around_image>", 49190: "<image>", 49279: "<end_of_utterance>"}
    tok = hub_tokenizer(
        specials,
        {
            "bos_token": "<|im_start|>",
            "eos_token": "<end_of_utterance>",
            "pad_token": "<|im_end|>",
            "unk_token": "<|endoftext|>",
            "image_token": "<image>",
            "end_of_utterance_token": "<end_of_utterance>",
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
        },
    )
    cfg = T.Idefics3Config(
        vision_config={
            "hidden_size": HIDDEN,
            "intermediate_size": 3072,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 512,
            "patch_size": 16,
        },
        text_config=T.LlamaConfig(**_text(1536, 49280), rope_theta=100000.0, pad_token_id=2).to_dict(),
        image_token_id=49190,
        scale_factor=4,
        pad_token_id=2,
    )
    ip = T.Idefics3ImageProcessorPil(
        do_resize=True,
        size={"longest_edge": 2048},
        do_image_splitting=True,
        max_image_size={"longest_edge": 512},
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    proc = T.Idefics3Processor(
        image_processor=ip, tokenizer=tok, image_seq_len=64, chat_template=SMOLVLM_TEMPLATE
    )
    return T.Idefics3ForConditionalGeneration(cfg), proc


FAMILIES: dict[str, Family] = {
    "qwen2-vl": Family("qwen2-vl", "Qwen/Qwen2-VL-2B-Instruct", qwen2_vl, [151645, 151643]),
    "qwen2.5-vl": Family("qwen2.5-vl", "Qwen/Qwen2.5-VL-3B-Instruct", qwen2_5_vl, [151645, 151643]),
    "qwen3-vl": Family("qwen3-vl", "Qwen/Qwen3-VL-2B-Instruct", qwen3_vl, [151645, 151643]),
    "llava": Family("llava", "llava-hf/llava-1.5-7b-hf", llava_1_5, [2]),
    "gemma3": Family("gemma3", "google/gemma-3-4b-it", gemma3, [1, 106], batch=1),
    "internvl": Family("internvl", "OpenGVLab/InternVL3-1B-hf", internvl, [151645], batch=1),
    "llava-onevision": Family(
        "llava-onevision", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf", llava_onevision, [151645], batch=1
    ),
    "idefics3": Family(
        "idefics3",
        "HuggingFaceTB/SmolVLM-256M-Instruct",
        idefics3,
        [49279, 2],
        batch=1,
        lora_targets=r".*text_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$",
    ),
}


def save_lookalike(family: str, folder: Path, seed: int = 0) -> Path:
    """Build ``family``'s look-alike and save it with the hub's file layout, in bfloat16."""
    spec = FAMILIES[family]
    torch.manual_seed(seed)
    model, processor = spec.build()
    tok = processor.tokenizer
    text_cfg = model.config.get_text_config()
    text_cfg.eos_token_id, text_cfg.pad_token_id = spec.eos[0], tok.pad_token_id
    gen = model.generation_config
    gen.eos_token_id, gen.pad_token_id, gen.bos_token_id = spec.eos, tok.pad_token_id, tok.bos_token_id
    model.to(torch.bfloat16).save_pretrained(folder)
    processor.save_pretrained(folder)  # what transformers writes for the stock class
    processor.image_processor.save_pretrained(folder)  # preprocessor_config.json, as the hub ships it
    pre = folder / "preprocessor_config.json"
    pre.write_text(
        json.dumps({**json.loads(pre.read_text()), "processor_class": type(processor).__name__}, indent=2)
    )
    return folder


def save_nllb_lookalike(folder: Path, seed: int = 0) -> Path:
    """facebook/nllb-200-distilled-600M's layout: M2M100 (FFN 4,096; 1+1 layers, hidden shrunk), the
    NllbTokenizer with all 202 language codes at their real ids (eng_Latn 256047, deu_Latn 256042,
    zho_Hans 256200, <mask> 256203), vocabulary 256,206."""
    from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    bpe.train_from_iterator(
        CORPUS * 4, trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False)
    )
    state = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(state["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    for i in range(len(vocab), 256001):
        vocab[f"<filler_{i}>"] = i
    for i, code in enumerate(FAIRSEQ_LANGUAGE_CODES):
        vocab[code] = 256001 + i
    vocab["<mask>"] = 256001 + len(FAIRSEQ_LANGUAGE_CODES)
    tok = T.NllbTokenizer(
        vocab=vocab,
        merges=merges,
        additional_special_tokens=list(FAIRSEQ_LANGUAGE_CODES),
        src_lang="eng_Latn",
    )
    torch.manual_seed(seed)
    cfg = T.M2M100Config(
        vocab_size=256206,
        d_model=HIDDEN,
        encoder_layers=1,
        decoder_layers=1,
        encoder_ffn_dim=4096,
        decoder_ffn_dim=4096,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        max_position_embeddings=1024,
        scale_embedding=True,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    model = T.M2M100ForConditionalGeneration(cfg)
    model.to(torch.float32).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
