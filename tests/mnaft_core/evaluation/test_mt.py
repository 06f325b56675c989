from __future__ import annotations

import pytest

from mnaft_core.evaluation.mt import MtError, NllbTranslator, nllb_code


@pytest.mark.parametrize(
    ("tag", "code"),
    [("en", "eng_Latn"), ("de", "deu_Latn"), ("zh-Hans", "zho_Hans"), ("zh-Hant", "zho_Hant"),
     ("ja", "jpn_Jpan"), ("ko", "kor_Hang"), ("pt-BR", "por_Latn"), ("de-AT", "deu_Latn"),
     ("deu_Latn", "deu_Latn")],
)  # fmt: skip
def test_nllb_codes(tag: str, code: str) -> None:
    assert nllb_code(tag) == code


def test_unknown_language_is_named() -> None:
    with pytest.raises(MtError, match="no NLLB language code for 'tlh'"):
        nllb_code("tlh")
    with pytest.raises(MtError, match="no NLLB language code for 'zh-Latn'"):
        nllb_code("zh-Latn")  # Chinese needs its script to pick a code


def test_unloadable_model_is_named(tmp_path: object) -> None:
    pattern = r"(?s)cannot load MT model 'facebook/nllb-200-distilled-600M'.*local folder"
    with pytest.raises(MtError, match=pattern):
        NllbTranslator("facebook/nllb-200-distilled-600M", local_files_only=True)
