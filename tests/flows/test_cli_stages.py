"""The stage commands refuse what they cannot run before starting a flow, naming the option."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from flows.cli import app

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "configs" / "demo.yaml")


def test_unknown_systems_and_selectors_are_named(tmp_path: Path) -> None:
    store = ["--store", str(tmp_path / "store"), "--config", DEMO]
    res = CliRunner().invoke(app, ["finetune", "--method", "nosuch", *store])
    assert res.exit_code == 2 and "no system 'nosuch': configured are mnaft, full, lora, random" in res.stderr
    res = CliRunner().invoke(app, ["select", "--method", "nosuch", *store])
    assert res.exit_code == 2 and "--method 'nosuch': expected one of mnaft, random" in res.stderr


def test_translate_read_then_translate_needs_the_source_language(tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    Image.new("RGB", (64, 32), "white").save(img)
    res = CliRunner().invoke(app, ["translate", str(img), "--to", "de", "--system", "read+translate"])
    assert res.exit_code == 2 and "pass --from LANG" in res.stderr
    res = CliRunner().invoke(app, ["translate", str(img), "--to", "de", "--system", "ocr"])
    assert res.exit_code == 2 and "expected direct or read+translate" in res.stderr
