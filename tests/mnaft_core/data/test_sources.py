"""Every source reader on tiny files it makes itself (plus the real OS locale dir when present)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from mnaft_core.data.config import CldrSource, GettextSource, RenderedSource, TableColumns, TableSource
from mnaft_core.data.sources import (
    SYSTEM_LOCALE_DIRS,
    parse_mo,
    read_cldr,
    read_gettext,
    read_rendered,
    read_table,
)
from mnaft_core.data.types import DataError
from tests.mnaft_core.data.conftest import PAIRS, write_catalog


def test_table_tsv(tsv_file: Path) -> None:
    src = TableSource(
        path=tsv_file, columns=TableColumns(src_text="en", tgt_text="de"), src_lang="en", tgt_lang="de"
    )
    pairs = list(read_table(src))
    assert [(p.src_text, p.tgt_text) for p in pairs] == PAIRS
    assert {(p.src_lang, p.tgt_lang, p.origin) for p in pairs} == {("en", "de", "table")}


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_table_jsonl_parquet_with_language_columns(tmp_path: Path, fmt: str) -> None:
    df = pl.DataFrame({"s": ["Open"], "t": ["打开"], "sl": ["en"], "tl": ["zh_CN"]})
    path = tmp_path / f"t.{fmt}"
    df.write_ndjson(path) if fmt == "jsonl" else df.write_parquet(path)
    cols = TableColumns(src_text="s", tgt_text="t", src_lang="sl", tgt_lang="tl")
    (pair,) = read_table(TableSource(path=path, columns=cols))
    assert (pair.src_lang, pair.tgt_lang, pair.src_text, pair.tgt_text) == ("en", "zh_CN", "Open", "打开")


def test_table_missing_column_names_file_and_column(tsv_file: Path) -> None:
    src = TableSource(
        path=tsv_file, columns=TableColumns(src_text="english", tgt_text="de"), src_lang="en", tgt_lang="de"
    )
    with pytest.raises(DataError, match=r"pairs\.tsv.*'english'"):
        list(read_table(src))


def test_table_needs_languages(tsv_file: Path) -> None:
    src = TableSource(path=tsv_file, columns=TableColumns(src_text="en", tgt_text="de"))
    with pytest.raises(DataError, match="src_lang"):
        list(read_table(src))


@pytest.mark.parametrize("suffix", [".po", ".mo"])
def test_gettext_directory_po_and_mo(tmp_path: Path, suffix: str) -> None:
    write_catalog(
        tmp_path / "de" / "LC_MESSAGES" / f"app{suffix}", "de", [("_Open", "_Öffnen"), ("Quit", "Beenden")]
    )
    write_catalog(tmp_path / "po" / f"zh_CN{suffix}", "zh_CN", [("_Open", "打开(_O)")])
    src = GettextSource(location="directory", path=tmp_path)
    drops: Counter[str] = Counter()
    pairs = {
        (p.src_lang, p.tgt_lang, p.src_text, p.tgt_text)
        for p in read_gettext(src, {("en", "de"), ("en", "zh-Hans"), ("de", "zh-Hans")}, drops)
    }
    assert ("en", "de", "_Open", "_Öffnen") in pairs
    assert ("en", "zh-Hans", "_Open", "打开(_O)") in pairs
    assert ("en", "de", "Quit", "Beenden") in pairs


def test_gettext_po_fuzzy_is_dropped(tmp_path: Path) -> None:
    write_catalog(tmp_path / "de.po", "de", [("Open", "Öffnen"), ("Quit", "Verlassen")], fuzzy=("Quit",))
    drops: Counter[str] = Counter()
    pairs = list(read_gettext(GettextSource(location="directory", path=tmp_path), {("en", "de")}, drops))
    assert [p.src_text for p in pairs] == ["Open"] and drops["fuzzy"] == 1


def test_gettext_pivots_between_translations(tmp_path: Path) -> None:
    write_catalog(tmp_path / "de.mo", "de", [("Open", "Öffnen")])
    write_catalog(tmp_path / "ja.mo", "ja", [("Open", "開く")])
    pairs = list(read_gettext(GettextSource(location="directory", path=tmp_path), {("de", "ja")}, Counter()))
    assert [(p.src_text, p.tgt_text) for p in pairs] == [("Öffnen", "開く")]


def test_parse_mo_rejects_garbage() -> None:
    with pytest.raises(DataError, match=r"not a \.mo"):
        list(parse_mo(b"\x00" * 40))


def test_gettext_packages_scans_locale_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "fakepkg"
    (pkg / "__init__.py").parent.mkdir()
    (pkg / "__init__.py").write_text("")
    write_catalog(
        pkg / "conf" / "locale" / "pt_BR" / "LC_MESSAGES" / "django.mo", "pt_BR", [("Save", "Salvar")]
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    src = GettextSource(location="packages", packages=["fakepkg"])
    pairs = list(read_gettext(src, {("en", "pt-BR")}, Counter()))
    assert [(p.tgt_lang, p.tgt_text) for p in pairs] == [("pt-BR", "Salvar")]


def test_gettext_unknown_package_is_an_error() -> None:
    with pytest.raises(DataError, match="no_such_pkg_xyz"):
        list(
            read_gettext(
                GettextSource(location="packages", packages=["no_such_pkg_xyz"]), {("en", "de")}, Counter()
            )
        )


def test_gettext_system_locale() -> None:
    if not any(d.is_dir() and any(d.glob("de/LC_MESSAGES/*.mo")) for d in SYSTEM_LOCALE_DIRS):
        pytest.skip("no German .mo catalogs in the OS locale dirs (e.g. a slim container image)")
    src = GettextSource(location="system", languages=["de"], max_pairs_per_language=50)
    pairs = list(read_gettext(src, {("en", "de")}, Counter()))
    assert len(pairs) == 50
    assert all(p.src_lang == "en" and p.tgt_lang == "de" and p.src_text for p in pairs)


def test_cldr_pairs_same_key() -> None:
    pairs = list(read_cldr(CldrSource(categories=("territories", "months")), {("en", "de")}))
    texts = {(p.src_text, p.tgt_text) for p in pairs}
    assert ("Germany", "Deutschland") in texts and ("January", "Januar") in texts
    zh = {
        (p.src_text, p.tgt_text)
        for p in read_cldr(CldrSource(categories=("territories",)), {("en", "zh-Hans")})
    }
    assert ("Germany", "德国") in zh


def test_rendered_parquet_struct_images(rendered_parquet: Path) -> None:
    from mnaft_core.data.config import RenderedColumns

    cols = RenderedColumns(image="img", src_text="text", tgt_text="translation", src_lang="sl", tgt_lang="tl")
    pairs = list(read_rendered(RenderedSource(path=rendered_parquet, columns=cols)))
    assert [p.src_text for p in pairs] == ["Open", "Close window", "Save file"]
    assert pairs[0].image is not None and pairs[0].image.startswith(b"\x89PNG")
    assert pairs[1].image == b"not an image"


def test_rendered_datasets_folder(datasets_folder: Path) -> None:
    from mnaft_core.data.config import RenderedColumns

    cols = RenderedColumns(src_lang=None, tgt_lang=None)
    pairs = list(
        read_rendered(RenderedSource(path=datasets_folder, columns=cols, src_lang="en", tgt_lang="zh"))
    )
    assert [(p.src_lang, p.tgt_lang, p.tgt_text) for p in pairs] == [
        ("en", "zh", "打开"),
        ("en", "zh", "保存文件"),
    ]
    assert all(p.image and p.origin == "rendered" for p in pairs)
    assert json.loads((datasets_folder / "state.json").read_text())


def test_rendered_missing_column(datasets_folder: Path) -> None:
    src = RenderedSource(path=datasets_folder, src_lang="en", tgt_lang="zh")  # default src_lang column absent
    with pytest.raises(DataError, match=r"hfds.*'image'|hfds.*column"):
        list(
            read_rendered(src.model_copy(update={"columns": src.columns.model_copy(update={"image": "pic"})}))
        )


def test_gettext_key_follows_the_catalogs_read(tmp_path: Path) -> None:
    """A package that installs its translations changes what a gettext source reads (2026-12-04: GTK's
    catalogs came with chromium and moved 270 of the claim's test strings), so it changes the data key;
    a catalog of a language no direction uses does not."""
    from mnaft_core.data.config import DataConfig
    from mnaft_core.data.fingerprint import data_fingerprints

    write_catalog(tmp_path / "de" / "LC_MESSAGES" / "app.mo", "de", [("Open", "Öffnen")])
    cfg = DataConfig.model_validate(
        {
            "directions": [{"src": "en", "tgt": "de"}],
            "sources": [{"kind": "gettext", "location": "directory", "path": str(tmp_path)}],
        }
    )
    before = data_fingerprints(cfg)
    assert data_fingerprints(cfg) == before
    write_catalog(tmp_path / "ja" / "LC_MESSAGES" / "gtk30.mo", "ja", [("Open", "開く")])
    assert data_fingerprints(cfg) == before
    write_catalog(tmp_path / "de" / "LC_MESSAGES" / "gtk30.mo", "de", [("Quit", "Beenden")])
    assert data_fingerprints(cfg) != before
    system = DataConfig.model_validate(
        {"directions": [{"src": "en", "tgt": "de"}], "sources": [{"kind": "gettext", "location": "system"}]}
    )
    assert "sources[0]" in data_fingerprints(system)  # the machine's catalogs are part of the key
