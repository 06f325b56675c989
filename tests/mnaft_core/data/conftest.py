"""Tiny on-disk fixtures for the data-stage tests: tables, catalogs and rendered datasets."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import write_po
from PIL import Image

PAIRS = [("Open", "Öffnen"), ("Close window", "Fenster schließen"), ("Save file", "Datei speichern")]


def png_bytes(color: str = "white", size: tuple[int, int] = (40, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def write_catalog(
    path: Path, lang: str, messages: list[tuple[str, str]], fuzzy: tuple[str, ...] = ()
) -> Path:
    """A .po or .mo catalog (by suffix) holding the given msgid -> msgstr messages."""
    cat = Catalog(locale=lang.replace("-", "_"), charset="utf-8")
    for msgid, msgstr in messages:
        cat.add(msgid, msgstr, flags=("fuzzy",) if msgid in fuzzy else ())
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        (write_mo if path.suffix == ".mo" else write_po)(f, cat)
    return path


@pytest.fixture
def tsv_file(tmp_path: Path) -> Path:
    p = tmp_path / "pairs.tsv"
    p.write_text("en\tde\n" + "".join(f"{a}\t{b}\n" for a, b in PAIRS), encoding="utf-8")
    return p


@pytest.fixture
def rendered_parquet(tmp_path: Path) -> Path:
    """A rendered dataset: one good image, one corrupt image, one struct {bytes, path} image."""
    p = tmp_path / "rendered.parquet"
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "img": pa.array(
                [
                    {"bytes": png_bytes("red"), "path": None},
                    {"bytes": b"not an image", "path": None},
                    {"bytes": png_bytes("blue"), "path": "x.png"},
                ],
                type=image_type,
            ),
            "text": ["Open", "Close window", "Save file"],
            "translation": ["Öffnen", "Fenster schließen", "Datei speichern"],
            "sl": ["en", "en", "en"],
            "tl": ["de", "de", "de"],
        }
    )
    pq.write_table(table, p)
    return p


@pytest.fixture
def datasets_folder(tmp_path: Path) -> Path:
    """A `datasets.save_to_disk` layout: an Arrow IPC stream plus its json metadata."""
    d = tmp_path / "hfds"
    d.mkdir()
    table = pa.table(
        {
            "image": pa.array([png_bytes("green"), png_bytes("black")], type=pa.binary()),
            "src_text": ["Open", "Save file"],
            "tgt_text": ["打开", "保存文件"],
        }
    )
    with (
        pa.OSFile(str(d / "data-00000-of-00001.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as w,
    ):
        w.write_table(table)
    (d / "dataset_info.json").write_text(json.dumps({"features": {}}))
    (d / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    return d
