"""OCR engines behind one interface, for the OCR -> MT cascade and for reading-quality scores.

- ``rapidocr``: PaddleOCR's PP-OCR detection and recognition models in ONNX, shipped inside the rapidocr
  wheel: the offline default. ``Det.limit_type="max"`` keeps small text strips at their size.
- ``paddleocr``: the PaddleOCR package itself (optional extra ``mnaft[paddle]``); it fetches models on
  first use or takes local model folders.

Detected lines are put in reading order (rows top to bottom, each left to right) and joined: with spaces
between words of space-delimited scripts, without for Chinese and Japanese.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image
from pydantic import Field

from mnaft_core._base import StrictModel

NO_SPACE_SCRIPTS = frozenset({"Hans", "Hant", "Jpan", "Thai"})
# Scripts the recognition model inside the rapidocr wheel reads (PP-OCRv6 small: Chinese, Japanese, Latin).
RAPIDOCR_BUNDLED_SCRIPTS = frozenset({"Latn", "Hans", "Hant", "Jpan"})


class OcrError(RuntimeError):
    """An OCR engine that cannot run here, or cannot read a requested script."""


class OcrConfig(StrictModel):
    engine: Literal["rapidocr", "paddleocr"] = Field("rapidocr", description="OCR engine of the cascade")
    det_model_path: Path | None = Field(
        None, description="detection model (ONNX for rapidocr, folder for paddle)"
    )
    rec_model_path: Path | None = Field(
        None, description="recognition model (ONNX for rapidocr, folder for paddle)"
    )
    rec_keys_path: Path | None = Field(
        None, description="character dictionary of a custom rapidocr rec model"
    )
    scripts: tuple[str, ...] | None = Field(
        None, description="scripts the configured models read (ISO 15924); None = the engine's default models"
    )
    lang: str = Field(
        "ch", description="paddleocr language code of its recognition model (ch, japan, latin, ...)"
    )


@dataclass(frozen=True)
class OcrLine:
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float


def reading_order(lines: Sequence[OcrLine]) -> list[OcrLine]:
    """Rows by vertical overlap (a line joins a row when its centre lies within the row's extent)."""
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda ln: (ln.box[1] + ln.box[3]) / 2):
        cy = (line.box[1] + line.box[3]) / 2
        for row in rows:
            top = min(r.box[1] for r in row)
            bottom = max(r.box[3] for r in row)
            if top <= cy <= bottom:
                row.append(line)
                break
        else:
            rows.append([line])
    return [ln for row in rows for ln in sorted(row, key=lambda ln: ln.box[0])]


def join_lines(lines: Sequence[OcrLine], script: str) -> str:
    sep = "" if script in NO_SPACE_SCRIPTS else " "
    return sep.join(ln.text.strip() for ln in reading_order(lines) if ln.text.strip())


class OcrEngine(Protocol):
    name: str

    def covers(self, script: str) -> bool: ...

    def read_lines(self, image: Image.Image) -> list[OcrLine]: ...


def _box(points: Any) -> tuple[float, float, float, float]:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


class RapidOcrEngine:
    name = "rapidocr"

    def __init__(self, cfg: OcrConfig):
        from rapidocr import RapidOCR

        params: dict[str, Any] = {
            "Det.limit_type": "max",
            "Global.log_level": "error",
            "Global.use_cls": False,
        }
        for key, path in (
            ("Det.model_path", cfg.det_model_path),
            ("Rec.model_path", cfg.rec_model_path),
            ("Rec.rec_keys_path", cfg.rec_keys_path),
        ):
            if path is not None:
                if not Path(path).exists():
                    raise OcrError(f"rapidocr: {key} {path} does not exist")
                params[key] = str(path)
        custom = cfg.rec_model_path is not None
        if custom and cfg.scripts is None:
            raise OcrError("rapidocr: a custom rec_model_path needs `scripts` saying which scripts it reads")
        self.scripts = frozenset(cfg.scripts) if cfg.scripts is not None else RAPIDOCR_BUNDLED_SCRIPTS
        self._engine = RapidOCR(params=params)

    def covers(self, script: str) -> bool:
        return script in self.scripts

    def read_lines(self, image: Image.Image) -> list[OcrLine]:
        res: Any = self._engine(np.asarray(image.convert("RGB"))[:, :, ::-1].copy())  # rapidocr wants BGR
        if res.txts is None or res.boxes is None:
            return []
        scores = res.scores if res.scores is not None else [1.0] * len(res.txts)
        return [OcrLine(t, _box(b), float(s)) for t, b, s in zip(res.txts, res.boxes, scores, strict=True)]


class PaddleOcrEngine:
    name = "paddleocr"

    def __init__(self, cfg: OcrConfig):
        if importlib.util.find_spec("paddleocr") is None:
            raise OcrError(
                "paddleocr is not installed: pip install 'mnaft[paddle]' (or use engine: rapidocr)"
            )
        from paddleocr import PaddleOCR

        kwargs: dict[str, Any] = {"lang": cfg.lang}
        if cfg.det_model_path is not None:
            kwargs["text_detection_model_dir"] = str(cfg.det_model_path)
        if cfg.rec_model_path is not None:
            kwargs["text_recognition_model_dir"] = str(cfg.rec_model_path)
        try:
            self._engine = PaddleOCR(**kwargs)
        except Exception as err:  # model download failures surface here; say what to do
            raise OcrError(
                f"paddleocr could not load its models ({type(err).__name__}: {err}); offline, pass local "
                "det_model_path and rec_model_path folders"
            ) from err
        self.scripts = frozenset(cfg.scripts or _PADDLE_LANG_SCRIPTS.get(cfg.lang, ()))

    def covers(self, script: str) -> bool:
        return script in self.scripts

    def read_lines(self, image: Image.Image) -> list[OcrLine]:
        out: list[OcrLine] = []
        for page in self._engine.predict(np.asarray(image.convert("RGB"))):
            for text, poly, score in zip(
                page["rec_texts"], page["rec_polys"], page["rec_scores"], strict=True
            ):
                out.append(OcrLine(text, _box(poly), float(score)))
        return out


_PADDLE_LANG_SCRIPTS = {
    "ch": ("Hans", "Hant", "Latn"),
    "chinese_cht": ("Hant", "Latn"),
    "japan": ("Jpan", "Latn"),
    "korean": ("Kore", "Latn"),
    "latin": ("Latn",),
    "en": ("Latn",),
    "cyrillic": ("Cyrl", "Latn"),
    "arabic": ("Arab",),
}


def make_ocr(cfg: OcrConfig, scripts: Sequence[str] = ()) -> OcrEngine:
    """Build the engine and refuse, before any work, scripts it does not read."""
    engine: OcrEngine = RapidOcrEngine(cfg) if cfg.engine == "rapidocr" else PaddleOcrEngine(cfg)
    missing = sorted({s for s in scripts if not engine.covers(s)})
    if missing:
        raise OcrError(
            f"OCR engine {cfg.engine} does not read script(s) {', '.join(missing)}; configure a recognition "
            "model for them (ocr.rec_model_path + ocr.scripts) or drop those directions"
        )
    return engine


def ocr_texts(engine: OcrEngine, images: Sequence[Image.Image], scripts: Sequence[str]) -> list[str]:
    """One string per image, lines in reading order; an unreadable image gives an empty string."""
    return [join_lines(engine.read_lines(img), script) for img, script in zip(images, scripts, strict=True)]
