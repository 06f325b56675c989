"""Stage 1 of the organism: teach the vision tower to read, with CTC over its patch columns.

Trained end to end from scratch, a small MLLM learns only the language prior: the decoder gets the loss
down by guessing and the vision side receives almost no signal (measured: no reading at all after 15 CPU
minutes). Supervising the vision tower directly works: a linear CTC head over each patch column (its rows
concatenated) reads the strip left to right, and after this stage the LM only has to learn to look.
Images are rendered anew for every example from train-split texts, so styles never repeat.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFont
from torch import nn
from tqdm.auto import tqdm

from mnaft_core.data.config import RenderConfig
from mnaft_core.data.fonts import FontFile, FontLibrary, detect_script
from mnaft_core.data.render import Rendered, render_text
from mnaft_core.data.types import DataError
from mnaft_core.evaluation.metrics import error_rate
from mnaft_core.organism.config import StageSpec

BLANK = 0


@dataclass(frozen=True)
class Line:
    lang: str
    text: str


class LineRenderer:
    """Renders (lang, text) lines in freshly sampled styles; texts that cannot be drawn are skipped."""

    def __init__(self, lines: Sequence[Line], render: RenderConfig, seed: int):
        if not lines:
            raise DataError("no text lines to render for reading")
        self.lines = list(lines)
        self.render = render
        self.fonts = FontLibrary.discover(render.font_dirs)
        self.rng = np.random.default_rng(seed)
        self._faces: dict[str, FontFile] = {}

    def draw(self, line: Line) -> tuple[Image.Image, list[tuple[float, float]]] | None:
        """The strip and each character's horizontal extent in it (for aligned supervision)."""
        try:
            script = detect_script(line.text, line.lang)
            r = render_text(line.text, script, self.rng, self.render, self.fonts)
        except DataError:  # too long for the strip, or no font: not a reading example
            return None
        return r.image, self._spans(line.text, r)

    def _spans(self, text: str, r: Rendered) -> list[tuple[float, float]]:
        """Advance-width prefix sums scaled into the ink box (rotation is at most a few degrees)."""
        if r.font not in self._faces:
            self._faces[r.font] = next(f for f in self.fonts.files() if f.name == r.font)
        face = self._faces[r.font]
        font = ImageFont.truetype(str(face.path), r.style["font_size"], index=face.index)
        x0, _, x1, _ = r.boxes[0]
        edges = [font.getlength(text[:i]) for i in range(len(text) + 1)]
        scale = (x1 - x0) / edges[-1] if edges[-1] > 0 else 0.0
        return [(x0 + a * scale, x0 + b * scale) for a, b in itertools.pairwise(edges)]

    def sample(self, n: int) -> list[tuple[Line, Image.Image, list[tuple[float, float]]]]:
        out: list[tuple[Line, Image.Image, list[tuple[float, float]]]] = []
        while len(out) < n:
            line = self.lines[int(self.rng.integers(len(self.lines)))]
            drawn = self.draw(line)
            if drawn is not None:
                out.append((line, *drawn))
        return out


class Charset:
    """Characters of the reading texts; index 0 is CTC's blank, unknown characters are dropped."""

    def __init__(self, texts: Sequence[str]):
        self.chars = sorted({c for t in texts for c in t})
        self.index = {c: i + 1 for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> list[int]:
        return [self.index[c] for c in text if c in self.index]

    def decode_greedy(self, ids: Sequence[int]) -> str:
        out, prev = [], BLANK
        for i in ids:
            if i != prev and i != BLANK:
                out.append(self.chars[i - 1])
            prev = i
        return "".join(out)


def to_grid(features: torch.Tensor, grid_thw: torch.Tensor, merge: int) -> list[torch.Tensor]:
    """Qwen2-VL orders patches by merge window; put each image's patches back as (rows, cols, dim)."""
    out, start = [], 0
    for t, h, w in grid_thw.tolist():
        n = t * h * w
        x = features[start : start + n].view(t, h // merge, w // merge, merge, merge, -1)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(t, h, w, -1)
        out.append(x.mean(0))  # temporal copies of a still image
        start += n
    return out


class ColumnCtcHead(nn.Module):
    """Each patch column (rows concatenated) -> ``slots`` CTC frames over the charset."""

    def __init__(self, dim: int, rows: int, classes: int, slots: int = 2):
        super().__init__()
        self.rows, self.slots, self.classes = rows, slots, classes
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim * rows, slots * classes)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:  # (rows, cols, dim) -> (cols*slots, classes)
        rows, cols, _ = grid.shape
        if rows != self.rows:
            raise ValueError(
                f"reading head expects {self.rows} patch rows, got {rows} (did the height change?)"
            )
        cols_feat = self.norm(grid).permute(1, 0, 2).reshape(cols, -1)
        return self.proj(cols_feat).view(cols * self.slots, self.classes)


def frame_labels(
    charset: Charset, text: str, spans: Sequence[tuple[float, float]], frames: int, frame_px: float
) -> torch.Tensor:
    """The character under each CTC frame's centre (blank between characters and in the margins)."""
    labels = torch.zeros(frames, dtype=torch.long)
    for j in range(frames):
        x = (j + 0.5) * frame_px
        for ch, (a, b) in zip(text, spans, strict=False):
            if a <= x < b:
                labels[j] = charset.index.get(ch, BLANK)
                break
    return labels


def lr_at(step: int, spec: StageSpec) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    t = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
    return spec.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def optimize(
    opt: torch.optim.Optimizer, loss: torch.Tensor, params: Iterable[torch.Tensor], lr: float
) -> None:
    """One AdamW step at ``lr`` (times each group's ``scale``), gradients clipped to norm 1."""
    for g in opt.param_groups:
        g["lr"] = lr * g.get("scale", 1.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


class Progress:
    """A stage's step loop: progress bar (TTY only), smoothed loss, a log row every 50 steps, summary."""

    def __init__(
        self, stage: int, spec: StageSpec, desc: str, log: Callable[[dict[str, float]], None] | None
    ):
        self.stage, self.spec, self.log = stage, spec, log
        self.bar = tqdm(range(spec.steps), desc=desc, unit="step", disable=None, mininterval=5)
        self.t0, self.ema = time.perf_counter(), float("nan")

    def __iter__(self) -> Iterator[int]:
        return iter(self.bar)

    def update(self, step: int, loss: float) -> None:
        self.ema = loss if math.isnan(self.ema) else 0.95 * self.ema + 0.05 * loss
        self.bar.set_postfix(loss=f"{self.ema:.3f}")
        if self.log is not None and (step % 50 == 0 or step == self.spec.steps - 1):
            row = {"stage": float(self.stage), "step": float(step), "loss": self.ema}
            self.log({**row, "seconds": time.perf_counter() - self.t0})

    def summary(self) -> dict[str, float]:
        return {
            "steps": float(self.spec.steps),
            "final_loss": self.ema,
            "seconds": time.perf_counter() - self.t0,
        }


class VisionReader:
    """The vision tower plus its CTC head: train, then read greedily."""

    def __init__(self, visual: nn.Module, processor: object, charset: Charset, rows: int, merge: int):
        self.visual, self.processor, self.charset, self.merge = visual, processor, charset, merge
        dim = int(visual.config.embed_dim)  # type: ignore[union-attr,arg-type]
        self.patch = int(visual.config.patch_size)  # type: ignore[union-attr,arg-type]
        self.head = ColumnCtcHead(dim, rows, len(charset), slots=max(1, self.patch // 4))  # a frame per 4 px
        self.head.to(next(visual.parameters()).device)

    def _logits(self, images: Sequence[Image.Image]) -> list[torch.Tensor]:
        px = self.processor.image_processor(images=list(images), return_tensors="pt")  # type: ignore[attr-defined]
        device = next(self.visual.parameters()).device
        grid = px["image_grid_thw"].to(device)
        feats = self.visual(px["pixel_values"].to(device), grid_thw=grid).last_hidden_state
        return [self.head(g) for g in to_grid(feats, grid, self.merge)]

    def train(
        self, renderer: LineRenderer, spec: StageSpec, log: Callable[[dict[str, float]], None] | None = None
    ) -> dict[str, float]:
        params = list(self.visual.parameters()) + list(self.head.parameters())
        opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
        ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
        self.visual.train()
        progress = Progress(1, spec, "reading (CTC)", log)
        for step in progress:
            batch = renderer.sample(spec.batch_size)
            logits = self._logits([img for _, img, _ in batch])
            targets = [torch.tensor(self.charset.encode(line.text), dtype=torch.long) for line, _, _ in batch]
            lp = nn.utils.rnn.pad_sequence(logits).log_softmax(-1)  # (T, B, C)
            loss = ctc(
                lp,
                torch.cat(targets).to(lp.device),
                torch.tensor([len(x) for x in logits]),
                torch.tensor([len(t) for t in targets]),
            )
            # CTC alone sits on its all-blank plateau for thousands of steps here; telling each frame
            # which character it shows (known from the renderer) gets the tower reading in hundreds.
            frames = [
                frame_labels(self.charset, line.text, spans, len(lg), self.patch / self.head.slots)
                for (line, _, spans), lg in zip(batch, logits, strict=True)
            ]
            loss = loss + nn.functional.cross_entropy(torch.cat(logits), torch.cat(frames).to(lp.device))
            optimize(opt, loss, params, lr_at(step, spec))
            progress.update(step, loss.item())
        return progress.summary()

    @torch.no_grad()
    def read(self, images: Sequence[Image.Image], batch_size: int = 64) -> list[str]:
        self.visual.eval()
        out: list[str] = []
        for i in range(0, len(images), batch_size):
            for lg in self._logits(images[i : i + batch_size]):
                out.append(self.charset.decode_greedy(lg.argmax(-1).tolist()))
        self.visual.train()
        return out

    def cer(self, images: Sequence[Image.Image], texts: Sequence[str]) -> float:
        return error_rate(self.read(images), texts, unit="char")
