"""Every CLI failure: one line naming what is at fault, a non-zero exit; a traceback only with --debug."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import yaml
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from flows.errors import describe, quiet_console_tracebacks
from mnaft_core.models.tiny import save_tiny
from storage import ArtifactStore
from tests.flows.test_pipeline import PAIRS
from tests.reliability.cases import record


def _config(tmp_path: Path, model: str, tgt: str = "de", table: Path | None = None) -> Path:
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("src_text\ttgt_text\n" + "".join(f"{a}\t{b}\n" for a, b in PAIRS))
    cfg = {
        "name": "t",
        "store": str(tmp_path / "store"),
        "model": {"name_or_path": model, "device": "cpu"},
        "data": {
            "directions": [{"src": "en", "tgt": tgt}],
            "sources": [{"kind": "table", "path": str(table or tsv), "src_lang": "en", "tgt_lang": "de"}],
            "split": {"val_fraction": 0.1, "test_fraction": 0.2},
            "render": {"height": 32, "max_width": 128, "max_lines": 1, "font_size": [14, 16]},
        },
        "profile": {"max_samples_per_direction": 4, "batch_size": 4, "shard_size": 4},
        "evaluate": {"cascade": False},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _flow_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a flow command as the user does (``python -m flows.cli``), against the test harness's Prefect
    server, so the whole stderr of the process is seen."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "PREFECT_API_URL": str(PREFECT_API_URL.value())}  # fmt: skip
    env.pop("MNAFT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip


def _one_line(stderr: str) -> str:
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


def test_config_checks_tags_model_and_paths(tmp_path: Path) -> None:
    bad = _config(tmp_path, str(tmp_path / "no-model"), tgt="xx-Nope", table=tmp_path / "missing.tsv")
    res = CliRunner().invoke(app, ["config", "-c", str(bad)])
    assert res.exit_code == 2, res.output
    assert "data.directions[0].tgt: unknown language tag 'xx-Nope'" in res.stderr
    assert f"model.name_or_path: model folder {tmp_path / 'no-model'} does not exist" in res.stderr
    assert f"data.sources[0].path: {tmp_path / 'missing.tsv'} does not exist" in res.stderr
    assert "Traceback" not in res.output
    good = _config(tmp_path, str(save_tiny("qwen2-vl", tmp_path / "tiny")))
    res = CliRunner().invoke(app, ["config", "-c", str(good)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["model"]["name_or_path"] == str(tmp_path / "tiny")
    for what in ("unknown language tag", "missing model folder", "missing source file"):
        record("bad config", f"`mnaft config`: {what}", "clear error", "exit 2, the field named")


def test_store_path_error_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    args = ["artifacts", "list", "--store", "/proc/mnaft-store"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1
    assert _one_line(res.stderr) == "error: /proc/mnaft-store: No such file or directory"
    res = CliRunner().invoke(app, ["--debug", *args])
    assert isinstance(res.exception, FileNotFoundError)  # raised through: the runner would print it
    record("bad input", "store path that cannot be created", "clear error", "the path named")


def test_data_with_unknown_language_tag(prefect_harness: None, tmp_path: Path) -> None:
    cfg = _config(tmp_path, "embedded:organism", tgt="xx-Nope")
    res = _flow_cli(["data", "-c", str(cfg)])
    assert res.returncode == 1, res.stderr
    line = _one_line(res.stderr)
    assert "data.directions[0]" in line and "'xx-Nope'" in line
    record("bad config", "`mnaft data`: unknown language tag", "clear error", "DataError, one line")


def test_profile_with_missing_model_folder(prefect_harness: None, tmp_path: Path) -> None:
    missing = tmp_path / "moved-model"
    save_tiny("qwen2-vl", missing)
    cfg = _config(tmp_path, str(missing))
    missing.rename(tmp_path / "elsewhere")  # the model folder moved after the config was written
    res = _flow_cli(["profile", "-c", str(cfg)])
    assert res.returncode == 1, res.stderr
    line = _one_line(res.stderr)
    assert str(missing) in line and "could not load model" in line
    st = ArtifactStore(tmp_path / "store")
    assert st.manifests("profile") == []
    staging = Path(st.root) / ".staging"
    assert not staging.exists() or not any(p.name.startswith("profile-") for p in staging.iterdir())
    record("bad config", "`mnaft profile`: model folder missing", "clear error", "ModelLoadError, one line")


def test_translate_refuses_oversized_images_and_translates_the_rest(tmp_path: Path) -> None:
    model = save_tiny("qwen2-vl", tmp_path / "m")
    good = tmp_path / "sign.png"
    Image.new("RGB", (64, 32), "white").save(good)
    bomb = tmp_path / "bomb.png"  # 196 Mpx in a few KB: over PIL's own error threshold too
    Image.new("1", (14000, 14000)).save(bomb)
    wide = tmp_path / "wide.png"
    Image.new("RGB", (200, 32), "white").save(wide)
    args = ["translate", str(bomb), str(good), str(wide), "--to", "en", "--from", "de", "--model", str(model)]
    res = CliRunner().invoke(app, [*args, "--json", "--max-new-tokens", "2", "--device", "cpu",
                                   "--max-pixels", "5000"])  # fmt: skip
    assert res.exit_code == 1, res.output
    lines = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert [ln["image"] for ln in lines] == [str(good)]
    assert f"{bomb}: 14000x14000 = 196,000,000 pixels, over the limit of 5,000" in res.stderr
    assert f"{wide}: 200x32 = 6,400 pixels" in res.stderr
    assert "Traceback" not in res.output
    record("bad input", "`mnaft translate`: decompression-bomb PNG among good images", "clear error",
           "the image named, the others translated")  # fmt: skip


def test_describe_known_third_party_failures() -> None:
    from botocore.exceptions import NoCredentialsError
    from PIL.Image import DecompressionBombError

    line, code = describe(NoCredentialsError())
    assert line.startswith("store access failed (NoCredentialsError)") and "--store" in line and code == 1
    line, _ = describe(DecompressionBombError("Image size (200000000 pixels) exceeds limit"))
    assert line.startswith("image too large to decode safely: Image size (200000000 pixels)")
    assert describe(PermissionError(13, "Permission denied", "/data/x.tsv")) == (
        "/data/x.tsv: Permission denied",
        1,
    )
    line, code = describe(RuntimeError("boom\n  at frame 3"))
    assert line == "unexpected RuntimeError: boom (run `mnaft --debug ...` for the traceback)" and code == 1
    assert describe(KeyboardInterrupt())[1] == 130


def test_prefect_console_keeps_the_message_but_not_the_traceback(prefect_harness: None) -> None:
    """Without --debug a flow command filters Prefect's console handler: its failure lines stay short."""
    quiet_console_tracebacks()
    consoles = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    assert consoles, "Prefect's console handler sits on the root logger"
    try:
        raise ValueError("bad tag")
    except ValueError:
        info = sys.exc_info()
    for handler in consoles:
        record = logging.LogRecord(
            "prefect.engine", logging.ERROR, __file__, 1, "Task run failed", None, info
        )
        assert handler.filter(record)
        text = handler.format(record)
        assert "Task run failed" in text and "Traceback" not in text
