"""The cascade's text translator when no real NLLB checkpoint is at hand: NLLB's architecture, tokenizer
class and language codes, trained on the same parallel text as the MLLM organism.

It loads through ``AutoTokenizer`` / ``AutoModelForSeq2SeqLM`` and decodes with the target code forced as
the first token, exactly like facebook/nllb-200-distilled-600M, so the cascade code cannot tell them apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np
import torch
import transformers as T
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from mnaft_core.data.dataset import Sample
from mnaft_core.evaluation.mt import nllb_code
from mnaft_core.organism.config import MtSpec
from mnaft_core.organism.reading import Progress, lr_at, optimize

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # NLLB's ids 0..3


def train_nllb_tokenizer(texts: Sequence[str], languages: Sequence[str], vocab_size: int) -> T.NllbTokenizer:
    """A Metaspace BPE (the pre-tokenizer NLLB uses) with NLLB's special tokens and language codes."""
    codes = sorted({nllb_code(lang) for lang in languages})
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(codes), special_tokens=SPECIALS, show_progress=False
    )
    bpe.train_from_iterator(texts, trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    return T.NllbTokenizer(
        vocab=state["vocab"],
        merges=merges,  # type: ignore[arg-type]
        additional_special_tokens=codes,
        src_lang=codes[0],
    )


def build_nllb(tokenizer: T.NllbTokenizer, spec: MtSpec) -> T.M2M100ForConditionalGeneration:
    config = T.M2M100Config(
        vocab_size=len(tokenizer),
        d_model=spec.d_model,
        encoder_layers=spec.layers,
        decoder_layers=spec.layers,
        encoder_attention_heads=spec.attention_heads,
        decoder_attention_heads=spec.attention_heads,
        encoder_ffn_dim=spec.ffn_dim,
        decoder_ffn_dim=spec.ffn_dim,
        max_position_embeddings=128,
        dropout=0.1,
        scale_embedding=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,  # NLLB starts decoding from </s>
        tie_word_embeddings=True,
    )
    model = T.M2M100ForConditionalGeneration(config)
    model.generation_config.decoder_start_token_id = tokenizer.eos_token_id
    return model


def _encode_pairs(tokenizer: T.NllbTokenizer, pairs: Sequence[Sample]) -> list[tuple[list[int], list[int]]]:
    by_dir: dict[tuple[str, str], list[Sample]] = {}
    for s in pairs:
        by_dir.setdefault((s.src, s.tgt), []).append(s)
    out: list[tuple[list[int], list[int]]] = []
    for (src, tgt), group in by_dir.items():
        tokenizer.src_lang, tokenizer.tgt_lang = nllb_code(src), nllb_code(tgt)
        enc = tokenizer([s.src_text for s in group], text_target=[s.tgt_text for s in group])
        out.extend(zip(enc["input_ids"], enc["labels"], strict=True))
    return out


def train_nllb(
    model: T.M2M100ForConditionalGeneration,
    tokenizer: T.NllbTokenizer,
    pairs: Sequence[Sample],
    spec: MtSpec,
    seed: int,
    log: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, float]:
    data = _encode_pairs(tokenizer, pairs)
    device = next(model.parameters()).device
    rng = np.random.default_rng(seed + 2)
    pad = tokenizer.pad_token_id
    st = spec.train
    opt = torch.optim.AdamW(model.parameters(), lr=st.lr, weight_decay=st.weight_decay)
    model.train()
    progress = Progress(3, st, "NLLB-architecture MT", log)
    for step in progress:
        batch = [data[int(i)] for i in rng.integers(len(data), size=st.batch_size)]
        src = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s, _ in batch], True, pad).to(device)
        lab = torch.nn.utils.rnn.pad_sequence([torch.tensor(t) for _, t in batch], True, -100).to(device)
        loss = model(input_ids=src, attention_mask=(src != pad).long(), labels=lab).loss
        optimize(opt, loss, model.parameters(), lr_at(step, st))
        progress.update(step, loss.item())
    return progress.summary()
