"""What `mnaft config` can check without running anything: language tags, models, paths.

A config that validates can still fail an hour into a run: a misspelt language tag fails the data
stage, a model folder that moved fails profiling. These checks find such problems in a second; each
names the config field at fault.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mnaft_core.config import PipelineConfig
from mnaft_core.data.clean import UnknownLanguageError, normalize_lang
from mnaft_core.data.config import GettextSource, RenderedSource, TableSource
from mnaft_core.models.config import ModelConfig

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_language(tag: str | None, field: str) -> list[str]:
    if tag is None:
        return []
    try:
        normalize_lang(tag)
    except UnknownLanguageError as err:
        return [f"{field}: {err}"]
    return []


def check_model(model: ModelConfig, field: str) -> list[str]:
    """A model is resolvable offline: an embedded asset, a model folder, or a hub id already cached
    (when the hub cannot be asked: offline mode or ``local_files_only``)."""
    name = model.name_or_path
    if name.startswith("embedded:"):
        from mnaft_core.models.loading import EMBEDDED

        if name not in EMBEDDED:
            return [f"{field}: unknown embedded model {name!r}; known: {', '.join(sorted(EMBEDDED))}"]
        if not (EMBEDDED[name] / "config.json").is_file():
            return [
                f"{field}: the embedded model {name!r} is missing at {EMBEDDED[name]}: run `mnaft bootstrap`"
            ]
        return []
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            return [f"{field}: {path} is not a transformers model folder (no config.json)"]
        return []
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        return [f"{field}: model folder {path} does not exist"]
    if not _HUB_ID.match(name):
        return [f"{field}: {name!r} is neither an existing folder nor a hub id (org/name)"]
    offline = model.local_files_only or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    if offline:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json", revision=model.revision)
        if not isinstance(cached, str):
            return [
                f"{field}: hub model {name!r} is not in the local hub cache and the hub may not be "
                f"asked (offline); download it where the hub is reachable (`hf download {name}`)"
            ]
    return []


def check_config(cfg: PipelineConfig) -> list[str]:
    """Every problem found, one line each naming the field; empty when the config looks runnable."""
    problems: list[str] = []
    for i, d in enumerate(cfg.data.directions):
        problems += check_language(d.src, f"data.directions[{i}].src")
        problems += check_language(d.tgt, f"data.directions[{i}].tgt")
    for i, src in enumerate(cfg.data.sources):
        where = f"data.sources[{i}]"
        for side in ("src_lang", "tgt_lang"):
            value = getattr(src, side, None)
            if isinstance(value, str) and isinstance(src, TableSource | RenderedSource):
                problems += check_language(value, f"{where}.{side}")
        for j, lang in enumerate(getattr(src, "languages", None) or []):
            problems += check_language(lang, f"{where}.languages[{j}]")
        path = getattr(src, "path", None)
        if isinstance(src, TableSource | RenderedSource) and not Path(src.path).exists():
            problems.append(f"{where}.path: {src.path} does not exist")
        elif (
            isinstance(src, GettextSource)
            and src.location == "directory"
            and path is not None
            and not Path(path).is_dir()
        ):
            problems.append(f"{where}.path: directory {path} does not exist")
    problems += check_model(cfg.model, "model.name_or_path")
    if cfg.evaluate.cascade:
        problems += check_model(ModelConfig(name_or_path=cfg.evaluate.mt_model), "evaluate.mt_model")
    return problems
