"""Load a multimodal model and its processor from a hub id, a local folder, or the embedded organism.

The same code path serves Qwen/Qwen2-VL-2B-Instruct on a GPU server and the organism on a laptop:
``AutoModelForImageTextToText`` + ``AutoProcessor``. Two local facts are handled here and nowhere else:
a stock processor whose video processor needs torchvision (Qwen2-VL, InternVL, ...) is loaded without
its video part (``image_only``) from the same standard files; and a hub id that cannot be found gets
one line naming it and the cache that was searched.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

from mnaft_core.models.config import ModelConfig
from mnaft_core.models.placement import input_device, placement_kwargs
from mnaft_core.models.processor import image_only

ASSETS = Path(__file__).resolve().parents[2] / "assets"
# v1: the demo's organism; v2 (configs/organism-v2.yaml): zh too, a real modality gap (docs/organism.md)
EMBEDDED = {
    f"embedded:{name}": ASSETS / name
    for name in ("organism", "nllb-organism", "organism-v2", "nllb-organism-v2")
}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names it and says how to fix it."""


@dataclass
class LoadedModel:
    model: nn.Module
    processor: Any
    source: str  # the folder or hub id actually loaded
    device: torch.device
    saved_dtype: torch.dtype | None = None  # the dtype of the weights on disk (what exports keep)


def resolve(name_or_path: str) -> str:
    """An embedded name -> its asset folder; an existing folder -> itself; anything else is a hub id."""
    if name_or_path in EMBEDDED:
        path = EMBEDDED[name_or_path]
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"the embedded model {name_or_path!r} is missing at {path}: run `mnaft bootstrap` to build it"
            )
        return str(path)
    if name_or_path.startswith("embedded:"):
        raise ModelLoadError(f"unknown embedded model {name_or_path!r}; known: {', '.join(sorted(EMBEDDED))}")
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a transformers model folder (no config.json)")
        return str(path)
    return name_or_path


def pick_device(spec: str, field: str = "model.device") -> torch.device:
    """``spec`` as a torch device; an error names ``field`` (the config key it came from)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise ModelLoadError(f"{field} {spec!r} is not a torch device (cpu, cuda, cuda:1, auto)") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"{field} {spec!r} asks for CUDA but no CUDA device is available")
    return device


def pick_dtype(spec: str, device: torch.device) -> torch.dtype:
    if spec == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[spec]


def _hub_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "revision": cfg.revision,
        "local_files_only": cfg.local_files_only,
        "trust_remote_code": cfg.trust_remote_code,
    }


def hub_cache_dir() -> Path:
    """Where transformers looks for hub ids: the Hugging Face cache (HF_HUB_CACHE, or HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _looks_like_path(source: str) -> bool:
    """A folder path, not a hub id (``ORG/NAME``): absolute, relative to . or ~, or deeper than ORG/NAME."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source


def _explain(source: str, cfg: ModelConfig, err: Exception) -> ModelLoadError:
    if Path(source).exists():
        detail = " ".join(f"{type(err).__name__}: {err}".split())
        return ModelLoadError(f"could not load model {source!r}: the folder exists but transformers could "
                              f"not read it ({detail})")  # fmt: skip
    if _looks_like_path(source):
        return ModelLoadError(
            f"could not load model {source!r}: no such folder (a hub id is ORG/NAME; a path must exist)"
        )
    offline = cfg.local_files_only or os.environ.get("HF_HUB_OFFLINE") == "1"
    where = f"the Hugging Face cache {hub_cache_dir()}" + (" (offline)" if offline else " or the hub")
    return ModelLoadError(
        f"model {source!r} is not a local folder and is not in {where}: download it once where the hub "
        f"is reachable (`hf download {source}`), or pass a folder"
    )


def load_processor(source: str, cfg: ModelConfig) -> Any:
    """The checkpoint's own processor (AutoProcessor); the stock class without video where that needs
    torchvision and torchvision is missing, or where AutoProcessor finds only a tokenizer."""
    kwargs = _hub_kwargs(cfg)
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
        try:
            processor: Any = AutoProcessor.from_pretrained(source, **kwargs)
        except (ImportError, OSError, ValueError):  # e.g. its video processor needs torchvision
            processor = None
        if processor is None or not hasattr(processor, "image_processor"):
            if type(config) not in PROCESSOR_MAPPING:
                raise ModelLoadError(
                    f"{source}: no processor with an image processor for model type {config.model_type!r}"
                )
            processor = image_only(PROCESSOR_MAPPING[type(config)]).from_pretrained(source, **kwargs)
        return processor
    except (OSError, ValueError) as e:
        raise _explain(source, cfg, e) from e


def load_mllm(cfg: ModelConfig) -> LoadedModel:
    """Model (eval mode, on its device) and processor for ``cfg``."""
    source = resolve(cfg.name_or_path)
    device = pick_device(cfg.device)
    processor = load_processor(source, cfg)
    kwargs: dict[str, Any] = {**_hub_kwargs(cfg), "dtype": pick_dtype(cfg.dtype, device)}
    try:
        saved = getattr(AutoConfig.from_pretrained(source, **_hub_kwargs(cfg)), "dtype", None)
    except (OSError, ValueError) as e:
        raise _explain(source, cfg, e) from e
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if cfg.device_map is not None:  # accelerate places the blocks: GPUs, then CPU, then disk
        kwargs.update(placement_kwargs(cfg))
    try:
        model: Any = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as e:
        raise _explain(source, cfg, e) from e
    if cfg.device_map is None:
        model.to(device)
    else:
        device = input_device(model)
    model.eval()
    saved_dtype = saved if isinstance(saved, torch.dtype) else _DTYPES.get(str(saved or ""))
    return LoadedModel(model, processor, source, device, saved_dtype)


_IDENTITY_CACHE: dict[tuple[str, int, int], str] = {}


def model_identity(cfg: ModelConfig) -> str:
    """What a model *is*, for cache keys (hex sha256): the content of a local folder's config, tokenizer
    and weights, or the hub id and revision (a pinned revision pins content; a branch moves)."""
    source = resolve(cfg.name_or_path) if cfg.name_or_path.startswith("embedded:") else cfg.name_or_path
    folder = Path(source).expanduser()
    if not folder.is_dir():
        return hashlib.sha256(f"hub:{source}@{cfg.revision or 'main'}".encode()).hexdigest()
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.suffix not in (".json", ".safetensors", ".jinja", ".txt", ".model"):
            continue
        st = f.stat()
        memo = (str(f.resolve()), st.st_size, st.st_mtime_ns)
        if memo not in _IDENTITY_CACHE:
            fh = hashlib.sha256()
            with f.open("rb") as fp:
                for block in iter(lambda: fp.read(1 << 22), b""):
                    fh.update(block)
            _IDENTITY_CACHE[memo] = fh.hexdigest()
        h.update(f"{f.name}:{_IDENTITY_CACHE[memo]}".encode())
    return h.hexdigest()
