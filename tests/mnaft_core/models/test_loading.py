"""Loading goes through AutoModelForImageTextToText/AutoProcessor on saved tiny models of each family."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import ASSETS, ModelLoadError, load_mllm, pick_device, resolve
from mnaft_core.models.prompts import Example, encode, generate, model_inputs
from mnaft_core.models.tiny import FAMILIES, save_tiny
from tests.families.reload import draw_image, plain, project


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {f: save_tiny(f, root / f) for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_family_loads_trains_and_generates(family: str, tiny_dirs: dict[str, Path]) -> None:
    loaded = load_mllm(ModelConfig(name_or_path=str(tiny_dirs[family]), device="cpu"))
    assert hasattr(loaded.processor, "image_processor")
    assert type(loaded.processor).__module__.startswith("transformers.")  # saved as a stock class
    img = Image.new("RGB", (96, 32), "white")
    examples = [
        Example("translate_image", "de", "en", image=img, target="Hello"),
        Example("translate_text", "de", "en", text="Hallo Welt", target="Hello world"),
    ]
    batch = encode(loaded.processor, examples, with_target=True)
    out = loaded.model(**model_inputs(batch, loaded.device))
    assert torch.isfinite(out.loss)
    texts = generate(loaded.model, loaded.processor, examples, max_new_tokens=3, batch_size=2)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_the_committed_organism_reloads_in_plain_transformers_and_generates_the_same(
    tmp_path: Path,
) -> None:
    assert (ASSETS / "organism" / "preprocessor_config.json").is_file()
    image = draw_image(tmp_path / "img.png")
    report = plain(ASSETS / "organism", image)
    assert report["modules"] == [], "the plain reload imported mnaft"
    assert report["processor"] == "PaddleOCRVLProcessor"  # transformers' image-only Qwen2-VL-rule processor
    assert report["image_processor"] == "Qwen2VLImageProcessorPil"
    assert report["tokens"] == project(ASSETS / "organism", image)


def test_unreachable_hub_id_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"'Qwen/Qwen2-VL-2B-Instruct'.*hf download"):
        load_mllm(ModelConfig(name_or_path="Qwen/Qwen2-VL-2B-Instruct", device="cpu", local_files_only=True))


def test_bad_paths_and_devices_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        resolve(str(tmp_path))
    with pytest.raises(ModelLoadError, match="unknown embedded model 'embedded:nope'"):
        resolve("embedded:nope")
    with pytest.raises(ModelLoadError, match="'gpu0' is not a torch device"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="no CUDA device"):
            pick_device("cuda")
