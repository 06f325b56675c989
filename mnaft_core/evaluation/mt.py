"""Text MT for the cascade: NLLB / M2M100 checkpoints through transformers, with NLLB language codes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

# BCP-47 (as normalised by the data stage) -> NLLB-200 / FLORES-200 code.
NLLB_CODES = {
    "en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn", "it": "ita_Latn",
    "pt": "por_Latn", "pt-BR": "por_Latn", "nl": "nld_Latn", "sv": "swe_Latn", "da": "dan_Latn",
    "nb": "nob_Latn", "fi": "fin_Latn", "pl": "pol_Latn", "cs": "ces_Latn", "sk": "slk_Latn",
    "hu": "hun_Latn", "ro": "ron_Latn", "tr": "tur_Latn", "vi": "vie_Latn", "id": "ind_Latn",
    "ca": "cat_Latn", "et": "est_Latn", "lt": "lit_Latn", "lv": "lvs_Latn", "sl": "slv_Latn",
    "hr": "hrv_Latn", "ru": "rus_Cyrl", "uk": "ukr_Cyrl", "bg": "bul_Cyrl", "sr": "srp_Cyrl",
    "el": "ell_Grek", "he": "heb_Hebr", "ar": "arb_Arab", "fa": "pes_Arab", "hi": "hin_Deva",
    "bn": "ben_Beng", "th": "tha_Thai", "ko": "kor_Hang", "ja": "jpn_Jpan",
    "zh-Hans": "zho_Hans", "zh-Hant": "zho_Hant", "zh": "zho_Hans",
}  # fmt: skip


class MtError(ValueError):
    """A language the MT model cannot be told about, or a model that cannot be loaded."""


def nllb_code(lang: str) -> str:
    """NLLB code for a BCP-47 tag; an already-NLLB code (``deu_Latn``) passes through."""
    if len(lang) == 8 and lang[3] == "_":
        return lang
    if lang in NLLB_CODES:
        return NLLB_CODES[lang]
    base = lang.split("-")[0]
    if base in NLLB_CODES and base != "zh":
        return NLLB_CODES[base]
    raise MtError(f"no NLLB language code for {lang!r}; known: {', '.join(sorted(NLLB_CODES))}")


class NllbTranslator:
    """Batched, greedy or beam translation with the target code forced as the first decoder token."""

    def __init__(
        self,
        name_or_path: str,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        local_files_only: bool = False,
        num_beams: int = 1,
        max_new_tokens: int = 64,
        batch_size: int = 32,
    ):
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_files_only)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(
                name_or_path, dtype=dtype, local_files_only=local_files_only
            ).to(device)
        except OSError as err:
            from huggingface_hub import constants

            where = (
                "folder" if Path(name_or_path).exists() else f"Hugging Face cache {constants.HF_HUB_CACHE}"
            )
            raise MtError(
                f"cannot load MT model {name_or_path!r} from the {where}: download it once where the hub "
                f"is reachable (`hf download {name_or_path}`), or pass a local folder holding a "
                f"save_pretrained NLLB/M2M100 checkpoint ({type(err).__name__})"
            ) from err
        self.model.eval()
        self.device = device
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def _token_id(self, code: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(code)
        if not isinstance(tid, int) or tid == self.tokenizer.unk_token_id:
            raise MtError(f"MT tokenizer has no language token {code!r}")
        return int(tid)

    @torch.inference_mode()
    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        src_code, tgt_code = nllb_code(src), nllb_code(tgt)
        self._token_id(src_code)
        forced = self._token_id(tgt_code)
        self.tokenizer.src_lang = src_code
        out: list[str] = []
        for i in range(0, len(texts), self.batch_size):
            batch = [t if t.strip() else "" for t in texts[i : i + self.batch_size]]
            enc = self.tokenizer(batch, return_tensors="pt", padding=True, truncation=True).to(self.device)
            gen = self.model.generate(
                **enc,
                forced_bos_token_id=forced,
                num_beams=self.num_beams,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
            )
            decoded = self.tokenizer.batch_decode(gen, skip_special_tokens=True)
            # an empty OCR result translates to an empty hypothesis, not to the model's hallucination
            out.extend(d.strip() if s else "" for d, s in zip(decoded, batch, strict=True))
        return out
