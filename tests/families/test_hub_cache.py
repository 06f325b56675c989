"""Hub ids resolve offline from a Hugging Face cache, the way a user runs them after `hf download`:
the MLLM (`--model Qwen/Qwen2-VL-2B-Instruct`) and the cascade's MT model (facebook/nllb-200-*)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.families.hubcache import place_in_hub_cache
from tests.families.lookalike import save_lookalike, save_nllb_lookalike
from tests.families.reload import draw_image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hf-home")
    built = tmp_path_factory.mktemp("built")
    place_in_hub_cache(save_lookalike("qwen2-vl", built / "qwen"), home / "hub", "Qwen/Qwen2-VL-2B-Instruct")
    nllb = save_nllb_lookalike(built / "nllb")
    place_in_hub_cache(nllb, home / "hub", "facebook/nllb-200-distilled-600M")
    return home


def _run(args: list[str], hf_home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_mllm_hub_id_resolves_from_the_cache(hf_home: Path, tmp_path: Path) -> None:
    image = draw_image(tmp_path / "sign.png")
    r = _run(
        [
            "-m",
            "flows.cli",
            "translate",
            str(image),
            "--to",
            "de",
            "--model",
            "Qwen/Qwen2-VL-2B-Instruct",
            "--json",
            "--device",
            "cpu",
            "--max-new-tokens",
            "2",
        ],
        hf_home,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    line = json.loads([x for x in r.stdout.splitlines() if x.startswith("{")][-1])
    assert line["image"] == str(image) and isinstance(line["translation"], str)


def test_nllb_resolves_from_the_cache_with_its_language_codes_and_missing_ids_are_named(
    hf_home: Path, tmp_path: Path
) -> None:
    """One interpreter for the MT model and both missing-model messages (each start costs seconds)."""
    code = (
        "import json\n"
        "from mnaft_core.evaluation.mt import MtError, NllbTranslator\n"
        "from mnaft_core.models.config import ModelConfig\n"
        "from mnaft_core.models.loading import ModelLoadError, load_mllm\n"
        "mt = NllbTranslator('facebook/nllb-200-distilled-600M', max_new_tokens=3)\n"
        "ids = mt.tokenizer.convert_tokens_to_ids(['eng_Latn', 'deu_Latn', 'zho_Hans'])\n"
        "out = mt.translate(['Open file'], 'en', 'de') + mt.translate(['Open file'], 'en', 'zh-Hans')\n"
        "errors = []\n"
        "try:\n    NllbTranslator('facebook/nllb-200-1.3B')\n"
        "except MtError as e:\n    errors.append(str(e))\n"
        "try:\n    load_mllm(ModelConfig(name_or_path='Qwen/Qwen2.5-VL-3B-Instruct', device='cpu'))\n"
        "except ModelLoadError as e:\n    errors.append(str(e))\n"
        "print(json.dumps({'ids': ids, 'out': out, 'errors': errors}))\n"
    )
    r = _run(["-c", code], hf_home, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["ids"] == [256047, 256042, 256200] and len(got["out"]) == 2
    mt_missing, mllm_missing = got["errors"]
    for msg, repo in ((mt_missing, "facebook/nllb-200-1.3B"), (mllm_missing, "Qwen/Qwen2.5-VL-3B-Instruct")):
        assert "\n" not in msg and repr(repo) in msg and str(hf_home / "hub") in msg, msg
        assert f"hf download {repo}" in msg, msg
