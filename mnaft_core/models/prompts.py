"""Prompts through the model's own chat template: one place turns examples into model inputs.

Every stage (organism pretraining, profiling, fine-tuning, generation) encodes through ``encode``, so a
model is always asked the same way. The response is tokenized apart from the prompt and appended, so
the label boundary is exact whatever the tokenizer merges; ``token_groups`` tells the profiler which
tokens are image, instruction or response (padding is -1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import torch
from babel import Locale, UnknownLocaleError
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from mnaft_core.models.placement import input_device

Task = Literal["translate_image", "translate_text", "read_image"]
TASKS: tuple[Task, ...] = ("translate_image", "translate_text", "read_image")
GROUP_IMAGE, GROUP_INSTRUCTION, GROUP_RESPONSE, GROUP_PAD = 0, 1, 2, -1
IGNORE = -100
# Per-token keys a processor may return; they are padded along with input_ids.
_TOKEN_KEYS = {"input_ids": None, "attention_mask": 0, "mm_token_type_ids": 0, "token_type_ids": 0}


class PromptError(ValueError):
    """An example that cannot be turned into a prompt (missing image or text, unknown task)."""


@dataclass(frozen=True)
class Example:
    task: Task
    src: str
    tgt: str
    text: str | None = None
    image: Image.Image | None = None
    target: str | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise PromptError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        if self.task == "translate_text" and self.text is None:
            raise PromptError("a translate_text example needs its source text")
        if self.task != "translate_text" and self.image is None:
            raise PromptError(f"a {self.task} example needs an image")


@lru_cache(maxsize=256)
def language_name(tag: str) -> str:
    """English name of a BCP-47 tag (``zh-Hans`` -> ``Chinese (Simplified)``); the tag if CLDR lacks it."""
    try:
        name = Locale.parse(tag.replace("-", "_")).get_display_name("en")
    except (ValueError, TypeError, UnknownLocaleError):
        return tag
    return name or tag


def instruction(ex: Example) -> str:
    if ex.task == "read_image":
        return "Read the text in the image."
    src, tgt = language_name(ex.src), language_name(ex.tgt)
    if ex.task == "translate_image":
        if not ex.src:  # source language unknown: let the model recognise it
            return f"Translate the text in the image to {tgt}."
        return f"Translate the text in the image from {src} to {tgt}."
    return f"Translate the following text from {src} to {tgt}.\n{ex.text}"


def messages(ex: Example) -> list[dict[str, Any]]:
    """The user turn of ``ex`` in the transformers chat format."""
    content: list[dict[str, Any]] = [{"type": "image"}] if ex.image is not None else []
    content.append({"type": "text", "text": instruction(ex)})
    return [{"role": "user", "content": content}]


def _image_token_id(processor: Any) -> int | None:
    """The id of the tokens that carry the image: the tokenizer's named image token where it has one
    (Gemma 3's processor names its begin-of-image token instead), else the processor's."""
    tid = getattr(processor.tokenizer, "image_token_id", None)
    if not isinstance(tid, int):
        tid = getattr(processor, "image_token_id", None)
    if tid is None and getattr(processor, "image_token", None) is not None:
        tid = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    return int(tid) if tid is not None else None


def encode(processor: Any, examples: Sequence[Example], *, with_target: bool) -> dict[str, torch.Tensor]:
    """Model inputs for a batch, left-padded; with ``labels`` (response only) when ``with_target``."""
    if not examples:
        raise PromptError("cannot encode an empty batch")
    tok = processor.tokenizer
    prompts = [
        processor.apply_chat_template(messages(e), add_generation_prompt=True, tokenize=False)
        for e in examples
    ]
    # one list of images per prompt: every processor takes it, and some (Gemma 3) need it in a batch
    images = [[e.image.convert("RGB")] if e.image is not None else [] for e in examples]
    enc = processor(text=prompts, images=images if any(images) else None, padding=False)
    eos = tok.eos_token or ""
    responses: list[list[int]] = []
    for e in examples:
        if with_target and e.target is None:
            raise PromptError(f"a {e.task} example has no target text to train on")
        responses.append(tok(e.target + eos, add_special_tokens=False)["input_ids"] if with_target else [])  # type: ignore[operator]
    lengths = [len(ids) + len(r) for ids, r in zip(enc["input_ids"], responses, strict=True)]
    width = max(lengths)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    image_id = _image_token_id(processor)
    out: dict[str, torch.Tensor] = {}
    for key, pad in _TOKEN_KEYS.items():
        if key not in enc:
            continue
        fill = pad_id if pad is None else pad
        rows = []
        for i, seq in enumerate(enc[key]):
            extra = (
                responses[i]
                if key == "input_ids"
                else [1 if key == "attention_mask" else 0] * len(responses[i])
            )
            rows.append([fill] * (width - lengths[i]) + list(seq) + list(extra))
        out[key] = torch.tensor(rows, dtype=torch.long)
    groups = torch.full((len(examples), width), GROUP_PAD, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, seq in enumerate(enc["input_ids"]):
        start, resp = width - lengths[i], width - len(responses[i])
        ids = torch.tensor(list(seq), dtype=torch.long)
        groups[i, start:resp] = GROUP_INSTRUCTION
        if image_id is not None:
            groups[i, start:resp][ids == image_id] = GROUP_IMAGE
        groups[i, resp:] = GROUP_RESPONSE
        if responses[i]:
            labels[i, resp:] = torch.tensor(responses[i], dtype=torch.long)
    out["token_groups"] = groups
    if with_target:
        out["labels"] = labels
    for key, value in enc.items():
        if key not in _TOKEN_KEYS:
            out[key] = _stacked(value)
    return out


def _stacked(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, list):  # some processors return one array per image
        return torch.from_numpy(np.stack([np.asarray(v) for v in value]))
    return torch.from_numpy(np.asarray(value))


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    """The batch minus bookkeeping keys, on ``device``."""
    return {k: v.to(device) for k, v in batch.items() if k != "token_groups"}


@torch.no_grad()
def generate(
    model: nn.Module,
    processor: Any,
    examples: Sequence[Example],
    *,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    progress: bool = False,
    num_beams: int = 1,
) -> list[str]:
    """Greedy (or beam) outputs for ``examples``, in order; special tokens stripped."""
    device = input_device(model)  # a model split by device_map takes its inputs at its first block
    was_training = model.training
    model.eval()
    tok = processor.tokenizer
    outputs: list[str] = []
    try:
        for start in tqdm(
            range(0, len(examples), batch_size), desc="generate", disable=None if progress else True
        ):
            chunk = examples[start : start + batch_size]
            batch = model_inputs(encode(processor, chunk, with_target=False), device)
            gen = model.generate(  # type: ignore[operator]
                **batch,
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            new = gen[:, batch["input_ids"].shape[1] :]
            outputs += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    finally:
        model.train(was_training)
    return outputs
