"""`mnaft translate`: one line (or JSON object) per readable image; unreadable files named, others go on."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from mnaft_core.models.tiny import save_tiny


def test_translate_reports_bad_files_and_translates_the_rest(tmp_path: Path) -> None:
    model = save_tiny("qwen2-vl", tmp_path / "m")
    good = tmp_path / "sign.png"
    Image.new("RGB", (64, 32), "white").save(good)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    args = ["translate", str(good), str(bad), "--to", "en", "--from", "de", "--model", str(model)]
    res = CliRunner().invoke(app, [*args, "--json", "--max-new-tokens", "3", "--device", "cpu"])
    assert res.exit_code == 1, res.output
    lines = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert [ln["image"] for ln in lines] == [str(good)] and isinstance(lines[0]["translation"], str)
    assert "broken.png" in res.stderr and "cannot read image" in res.stderr


def test_translate_names_an_unknown_model(tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    Image.new("RGB", (64, 32), "white").save(img)
    res = CliRunner().invoke(app, ["translate", str(img), "--to", "en", "--model", "deadbeef", "--store",
                                   str(tmp_path / "store")])  # fmt: skip
    assert res.exit_code == 2
    assert "--model 'deadbeef'" in res.stderr


def test_translate_render_draws_into_a_copy_of_the_image(tmp_path: Path) -> None:
    from PIL import ImageDraw

    from mnaft_core.viz.text import font_for

    model = save_tiny("qwen2-vl", tmp_path / "m")
    img = tmp_path / "sign.png"
    pic = Image.new("RGB", (240, 60), "white")
    ImageDraw.Draw(pic).text((10, 10), "Open file", fill="black", font=font_for("Open file", "en", 30))
    pic.save(img)
    out = tmp_path / "out" / "sign.de.png"
    args = ["translate", str(img), "--to", "de", "--from", "en", "--model", str(model), "--render", str(out)]
    res = CliRunner().invoke(app, [*args, "--json", "--max-new-tokens", "3", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    (line,) = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert line["text"].lower().replace(" ", "") == "openfile" and isinstance(line["translation"], str)
    x0, y0, x1, y1 = line["box"]
    assert x0 < 20 and x1 > 100 and y0 < 20 and y1 > 30  # the box is around the sign's text
    rendered = Image.open(out)
    assert rendered.size == pic.size and rendered.tobytes() != pic.tobytes()
    two = CliRunner().invoke(app, [*args, str(img)])
    assert two.exit_code == 2 and "takes exactly one IMAGE" in two.stderr
