"""What a checkpoint generates through plain transformers (a fresh interpreter) and through mnaft's loader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import load_mllm
from mnaft_core.models.prompts import Example, encode, instruction, model_inputs

SCRIPT = Path(__file__).with_name("plain_reload.py")
TASK, SRC, TGT = "translate_image", "en", "de"


def draw_image(path: Path) -> Path:
    img = Image.new("RGB", (96, 32), "white")
    ImageDraw.Draw(img).text((4, 8), "Open file", fill="black")
    img.save(path)
    return path


def plain(folder: Path, image: Path, n: int = 6) -> dict[str, Any]:
    """The script's report; only transformers (and torch, PIL) on the path: no PYTHONPATH, cwd /."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [
        sys.executable,
        str(SCRIPT),
        str(folder),
        str(image),
        instruction(Example(TASK, SRC, TGT, image=Image.new("RGB", (8, 8)))),
        str(n),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def project(folder: Path, image: Path, n: int = 6) -> list[int]:
    """The same greedy generation through mnaft's loader and prompt builder."""
    loaded = load_mllm(ModelConfig(name_or_path=str(folder), device="cpu", dtype="float32"))
    ex = Example(TASK, SRC, TGT, image=Image.open(image).convert("RGB"))
    batch = model_inputs(encode(loaded.processor, [ex], with_target=False), "cpu")
    tok = loaded.processor.tokenizer
    out = loaded.model.generate(  # type: ignore[operator]
        **batch,
        max_new_tokens=n,
        do_sample=False,
        num_beams=1,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return list(out[0, batch["input_ids"].shape[1] :].tolist())
