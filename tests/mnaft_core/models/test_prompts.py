"""Prompts: labels cover exactly the response, groups mark image/instruction/response, padding is left."""

from __future__ import annotations

import pytest
from PIL import Image
from transformers import AutoProcessor

from mnaft_core.models.prompts import (
    GROUP_IMAGE,
    GROUP_INSTRUCTION,
    GROUP_PAD,
    GROUP_RESPONSE,
    IGNORE,
    Example,
    PromptError,
    encode,
    instruction,
    language_name,
)
from mnaft_core.models.tiny import save_tiny


@pytest.fixture(scope="module")
def processor(tmp_path_factory: pytest.TempPathFactory) -> object:
    return AutoProcessor.from_pretrained(save_tiny("qwen2-vl", tmp_path_factory.mktemp("q") / "m"))


def test_language_names_and_instructions() -> None:
    assert language_name("zh-Hans") == "Chinese (Simplified)"
    assert language_name("de") == "German"
    assert language_name("xx-nonsense") == "xx-nonsense"
    ex = Example("translate_image", "de", "en", image=Image.new("RGB", (8, 8)))
    assert instruction(ex) == "Translate the text in the image from German to English."
    assert "Hallo" in instruction(Example("translate_text", "de", "en", text="Hallo"))


def test_labels_are_the_response_and_groups_partition_tokens(processor: object) -> None:
    img = Image.new("RGB", (96, 32), "white")
    exs = [
        Example("translate_image", "de", "en", image=img, target="Hello there"),
        Example("translate_text", "de", "en", text="Hallo", target="Hi"),
    ]
    b = encode(processor, exs, with_target=True)
    tok = processor.tokenizer  # type: ignore[attr-defined]
    for i, ex in enumerate(exs):
        resp = b["labels"][i][b["labels"][i] != IGNORE].tolist()
        assert tok.decode(resp) == f"{ex.target}{tok.eos_token}"
        groups = b["token_groups"][i]
        assert (groups == GROUP_RESPONSE).sum() == len(resp)
        assert ((groups == GROUP_PAD) == (b["attention_mask"][i] == 0)).all()
        assert groups[-1] == GROUP_RESPONSE and (groups == GROUP_INSTRUCTION).any()
    n_image = int((b["input_ids"][0] == processor.image_token_id).sum())  # type: ignore[attr-defined]
    assert n_image > 0 and int((b["token_groups"][0] == GROUP_IMAGE).sum()) == n_image
    assert (b["token_groups"][1] != GROUP_IMAGE).all()
    assert b["attention_mask"][:, -1].all()  # left padding: the last column is real for every row


def test_bad_examples_are_named(processor: object) -> None:
    with pytest.raises(PromptError, match="needs an image"):
        Example("translate_image", "de", "en", text="x")
    with pytest.raises(PromptError, match="unknown task 'ocr'"):
        Example("ocr", "de", "en", image=Image.new("RGB", (8, 8)))  # type: ignore[arg-type]
    with pytest.raises(PromptError, match="no target"):
        encode(processor, [Example("translate_text", "de", "en", text="x")], with_target=True)
    with pytest.raises(PromptError, match="empty batch"):
        encode(processor, [], with_target=False)


def test_generate_beam_search_from_config(tmp_path_factory: pytest.TempPathFactory) -> None:
    from transformers import AutoModelForImageTextToText

    from mnaft_core.models.prompts import generate

    folder = save_tiny("qwen2-vl", tmp_path_factory.mktemp("beam") / "m")
    model = AutoModelForImageTextToText.from_pretrained(folder)
    proc = AutoProcessor.from_pretrained(folder)
    exs = [Example("translate_image", "en", "de", image=Image.new("RGB", (w, 32), "white")) for w in (32, 64)]
    seen: list[int] = []
    real = model.generate

    def spy(**kw):  # type: ignore[no-untyped-def]
        seen.append(kw["num_beams"])
        return real(**kw)

    model.generate = spy  # type: ignore[method-assign]
    greedy = generate(model, proc, exs, max_new_tokens=3)
    beam = generate(model, proc, exs, max_new_tokens=3, num_beams=3)
    assert seen == [1, 3] and len(greedy) == len(beam) == 2
