"""Image-only processors, the standard processor files a checkpoint is saved with, and the tokenizer
recipe of models this project builds itself.

Stock processors of video-capable families (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL, LLaVA-OneVision,
GLM-4V) load a video processor, and transformers' video processors need torchvision, which CPU installs
here do not have; image translation needs no video. ``image_only(cls)`` is the stock class minus its
video processor: same ``__init__``, same ``__call__``, same class name (so what it saves names the stock
class), loaded from the checkpoint's standard files with the PIL image-processor backend.

Saving (``save_processor``) writes what plain transformers reads: ``processor_config.json`` naming a
transformers class, ``preprocessor_config.json`` (the image processor, as the hub ships it), the
tokenizer files without load-time flags, and the chat template. A Qwen-family processor is saved as
transformers' ``PaddleOCRVLProcessor``: the image-only processor whose image-token rule is Qwen2-VL's
own (one ``<|image_pad|>`` per merged patch), so ``AutoProcessor.from_pretrained`` returns a working
processor with or without torchvision (it gives identical inputs; tests check it).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PaddleOCRVLProcessor,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
    Qwen3VLProcessor,
)

# Keys that from_pretrained records in a tokenizer's init kwargs; they describe one load, not the model.
LOAD_FLAGS = (
    "local_files_only",
    "is_local",
    "revision",
    "cache_dir",
    "force_download",
    "token",
    "trust_remote_code",
    "_from_auto",
    "_commit_hash",
    "subfolder",
    "name_or_path",
)
# The stock processors whose images become one image token per merged patch (image_grid_thw / merge²).
QWEN_PROCESSORS = (Qwen2VLProcessor, Qwen2_5_VLProcessor, Qwen3VLProcessor)
QWEN_NAMED_TOKENS = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}


@functools.cache
def image_only(cls: type[ProcessorMixin]) -> type[ProcessorMixin]:
    """``cls`` without its video processor; loads from a checkpoint's standard files without torchvision."""
    attributes = [a for a in cls.get_attributes() if a != "video_processor"]
    if len(attributes) == len(cls.get_attributes()):
        return cls

    def get_attributes(_cls: type) -> list[str]:
        return list(attributes)

    return type(
        cls.__name__,
        (cls,),
        {
            "get_attributes": classmethod(get_attributes),
            "__doc__": f"{cls.__name__} without video.",
            "__module__": __name__,
        },
    )


def _standard_class(processor: Any) -> type[ProcessorMixin]:
    """The transformers class a saved folder names: the stock class, PaddleOCRVLProcessor for an image-only
    Qwen-family processor (the stock Qwen classes cannot load without torchvision), or the processor's own
    class when it is no transformers class (remote code the user opted into: saved as it is)."""
    if isinstance(processor, QWEN_PROCESSORS) and not hasattr(processor, "video_processor"):
        return PaddleOCRVLProcessor
    for klass in type(processor).__mro__:
        if klass.__module__.startswith("transformers.") and issubclass(klass, ProcessorMixin):
            return klass
    return type(processor)


def clean_tokenizer_config(folder: Path, named_tokens: dict[str, str] | None = None) -> None:
    """Drop load-time flags from ``tokenizer_config.json``; add named special tokens (``image_token``...)."""
    path = folder / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    for key in LOAD_FLAGS:
        cfg.pop(key, None)
    cfg.update(named_tokens or {})
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def save_processor(processor: Any, folder: Path) -> str:
    """Save ``processor`` as plain transformers loads it (module docstring); returns the class it names."""
    folder = Path(folder)
    klass = _standard_class(processor)
    tokenizer = copy.deepcopy(processor.tokenizer)  # the live one keeps its load record
    named: dict[str, str] = {}
    if klass is PaddleOCRVLProcessor:
        vocab = tokenizer.get_vocab()
        named = {k: v for k, v in QWEN_NAMED_TOKENS.items() if v in vocab}
        # PaddleOCRVLProcessor reads its image token from the tokenizer (saved below as a named token)
        tokenizer.image_token = named["image_token"]
        tokenizer.image_token_id = vocab[named["image_token"]]
        standard = PaddleOCRVLProcessor(
            image_processor=processor.image_processor,
            tokenizer=tokenizer,
            chat_template=processor.chat_template,
        )
    else:
        standard = copy.copy(processor)
        standard.tokenizer = tokenizer
    for key in LOAD_FLAGS:
        tokenizer.init_kwargs.pop(key, None)
    standard.save_pretrained(folder)
    processor.image_processor.save_pretrained(folder)  # preprocessor_config.json, as the hub ships it
    pre = folder / "preprocessor_config.json"
    cfg = json.loads(pre.read_text())
    cfg["processor_class"] = klass.__name__
    pre.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    clean_tokenizer_config(folder, named)
    return klass.__name__


# Qwen2-VL's special tokens, in its order; the chat template below is the checkpoint's own.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


ImageOnlyQwen2VLProcessor = image_only(Qwen2VLProcessor)


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE over ``texts`` with Qwen2-VL's special tokens and chat template.

    Byte-level, like Qwen's, so that any string (an unseen script included) still encodes.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",  # decoder-only generation pads on the left
        model_max_length=4096,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_processor(
    tokenizer: PreTrainedTokenizerFast,
    *,
    patch_size: int,
    merge_size: int,
    min_pixels: int,
    max_pixels: int,
    temporal_patch_size: int = 2,
) -> Any:
    """A processor for a Qwen2-VL-class model with the given vision geometry."""
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=patch_size,
        merge_size=merge_size,
        temporal_patch_size=temporal_patch_size,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
    )
    return ImageOnlyQwen2VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
