"""End-to-end build, bad inputs that must be skipped and counted, and the card/parquet outputs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

from mnaft_core.data.build import SCHEMA, build_dataset, write_dataset
from mnaft_core.data.card import write_card
from mnaft_core.data.clean import hash_key
from mnaft_core.data.config import DataConfig
from mnaft_core.data.types import DataError

SMALL = {
    "max_train_per_direction": 12,
    "max_eval_per_direction": 3,
    "val_fraction": 0.2,
    "test_fraction": 0.2,
}


def _cfg(
    tmp_path: Path, rows: list[dict[str, str]], directions: list[dict[str, str]], **extra: Any
) -> DataConfig:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    table = {"kind": "table", "path": str(path), "columns": {"src_lang": "sl", "tgt_lang": "tl"}}
    return DataConfig.model_validate(
        {"directions": directions, "sources": [table, *extra.pop("sources", [])], "split": SMALL, **extra}
    )


def _row(src: str, tgt: str, sl: str = "en", tl: str = "de") -> dict[str, str]:
    return {"src_text": src, "tgt_text": tgt, "sl": sl, "tl": tl}


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("e2e")
    rows = [
        _row("Open file", "Datei öffnen"),
        _row("Open file", "打开文件", tl="zh_CN"),
        _row("Quit", "Beenden"),
    ]
    cfg = _cfg(
        tmp,
        rows,
        [{"src": "en", "tgt": "de"}, {"src": "en", "tgt": "zh"}],
        sources=[{"kind": "cldr", "categories": ["territories", "months"]}],
    )
    return build_dataset(cfg, progress=False)


def test_end_to_end_table_and_cldr(demo_build: Any) -> None:
    t = demo_build.table
    assert t.schema == SCHEMA
    assert demo_build.counts == {
        "en-de": {"train": 12, "val": 3, "test": 3},
        "en-zh": {"train": 12, "val": 3, "test": 3},
    }
    rows = t.to_pylist()
    assert {r["origin"] for r in rows} <= {"table", "cldr"}
    assert {r["script"] for r in rows} == {"Latn"}  # the source side is English
    assert {(r["src_lang"], r["tgt_lang"]) for r in rows} == {("en", "de"), ("en", "zh")}
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows[:5]:
        im = Image.open(io.BytesIO(r["image"]))
        assert im.format == "PNG" and im.size == (r["width"], r["height"]) and r["font"]
        assert json.loads(r["style"])["lines"] == len(r["boxes"])
    split_of: dict[str, str] = {}
    for r in rows:  # no source text in two splits, across directions too
        assert split_of.setdefault(hash_key(r["src_text"]), r["split"]) == r["split"]


def test_build_is_deterministic(demo_build: Any) -> None:
    again = build_dataset(demo_build.config, progress=False)
    assert again.table.equals(demo_build.table)


def test_write_dataset_and_card(demo_build: Any, tmp_path: Path) -> None:
    path = write_dataset(demo_build, tmp_path)
    assert pq.read_table(path).equals(demo_build.table)
    card = write_card(demo_build, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {
        "dataset.parquet",
        "card.json",
        "card.md",
        "length_hist.png",
        "samples.png",
    }
    on_disk = json.loads((tmp_path / "card.json").read_text())
    assert on_disk["counts"] == card["counts"] == demo_build.counts
    assert "| en-zh | 12 | 3 | 3 |" in (tmp_path / "card.md").read_text()
    assert Image.open(tmp_path / "samples.png").size[0] > 100


def test_bad_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    rows = [
        _row("Open", "Öffnen"),
        _row("", "leer"),
        _row("%s", "%s"),
        _row("Save", "Speichern", sl="xx-invalid"),
        _row("𐀀𐀁 tablet", "Tafel"),  # Linear B: no font covers it
        _row("Close", "Schließen"),
    ]
    with pytest.raises(DataError, match=r"rows\.jsonl:4: unknown language tag 'xx-invalid'"):
        build_dataset(_cfg(tmp_path, rows, [{"src": "en", "tgt": "de"}]), progress=False)
    b = build_dataset(_cfg(tmp_path, rows, [{"src": "en", "tgt": "de"}], skip_bad=True), progress=False)
    assert sorted(b.table["src_text"].to_pylist()) == ["Close", "Open"]
    assert b.drops["empty"] == 1 and b.drops["placeholder_only"] == 1
    assert b.skipped_bad["unknown_language"] == 1 and b.drops["no_font"] == 1


def test_corrupt_images_are_skipped(tmp_path: Path, rendered_parquet: Path) -> None:
    cfg = DataConfig.model_validate(
        {
            "directions": [{"src": "en", "tgt": "de"}],
            "sources": [
                {
                    "kind": "rendered",
                    "path": str(rendered_parquet),
                    "columns": {
                        "image": "img",
                        "src_text": "text",
                        "tgt_text": "translation",
                        "src_lang": "sl",
                        "tgt_lang": "tl",
                    },
                }
            ],
            "split": SMALL,
        }
    )
    with pytest.raises(DataError, match=r"rendered\.parquet table 0 row 2: corrupt image"):
        build_dataset(cfg, progress=False)
    b = build_dataset(cfg.model_copy(update={"skip_bad": True}), progress=False)
    assert b.skipped_bad["corrupt_image"] == 1 and b.table.num_rows == 2
    assert set(b.table["font"].to_pylist()) == {""}  # carried, not re-rendered


def test_too_long_to_render_is_counted(tmp_path: Path) -> None:
    rows = [_row("Open", "Öffnen"), _row("Supercalifragilisticexpialidocious", "Wort")]
    cfg = _cfg(
        tmp_path,
        rows,
        [{"src": "en", "tgt": "de"}],
        render={"max_width": 64, "min_font_size": 14, "font_size": [14, 14]},
    )
    b = build_dataset(cfg, progress=False)
    assert b.drops["too_long_to_render"] == 1 and b.table["src_text"].to_pylist() == ["Open"]


def test_empty_direction_is_an_error_naming_it(tmp_path: Path) -> None:
    rows = [_row("Open", "Öffnen"), _row("OK", "OK")]
    cfg = _cfg(tmp_path, rows, [{"src": "en", "tgt": "de"}, {"src": "en", "tgt": "fr"}])
    with pytest.raises(DataError, match=r"direction en-fr: no usable pairs"):
        build_dataset(cfg, progress=False)


def test_unknown_config_language_fails_up_front(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, [_row("Open", "Öffnen")], [{"src": "en", "tgt": "qq"}])
    with pytest.raises(DataError, match=r"data\.directions\[0\].*'qq'"):
        build_dataset(cfg, progress=False)


def test_reverse_direction_swaps_pairs(tmp_path: Path) -> None:
    rows = [_row("Open file", "Datei öffnen"), _row("Quit", "Beenden")]
    b = build_dataset(_cfg(tmp_path, rows, [{"src": "de", "tgt": "en"}]), progress=False)
    assert sorted(zip(b.table["src_text"].to_pylist(), b.table["tgt_text"].to_pylist(), strict=True)) == [
        ("Beenden", "Quit"),
        ("Datei öffnen", "Open file"),
    ]


def test_charset_keeps_pairs_within_the_languages_frequent_characters(tmp_path: Path) -> None:
    # 一 and 个 are frequent, 鑫 appears once: an inventory of 2 keeps only the pairs without 鑫
    rows = [_row(f"one {i}", "一个" * (1 + i % 2), "en", "zh-Hans") for i in range(8)]
    rows += [_row("gold", "鑫一", "en", "zh-Hans")]
    dirs = [{"src": "en", "tgt": "zh-Hans"}, {"src": "zh-Hans", "tgt": "en"}]
    build = build_dataset(_cfg(tmp_path, rows, dirs, clean={"charset": {"zh-Hans": 2}}), progress=False)
    assert build.inventories == {"zh-Hans": "一个"}
    texts = pq.read_table(build.path, columns=["src_text", "tgt_text"]).to_pylist()
    assert texts and not any("鑫" in r["src_text"] + r["tgt_text"] for r in texts)
    assert build.drops_by_direction["en-zh-Hans"]["outside_charset"] == 1
    assert build.drops_by_direction["zh-Hans-en"]["outside_charset"] == 1
    card = write_card(build, tmp_path / "card")
    assert card["charset_inventories"] == {"zh-Hans": "一个"}
    assert "一个" in (tmp_path / "card" / "card.md").read_text()
    # one direction alone reads the same catalog pairs, so it gets the same inventory
    one = build_dataset(_cfg(tmp_path, rows, dirs[:1], clean={"charset": {"zh-Hans": 2}}), progress=False)
    assert one.inventories == build.inventories


def test_charset_language_must_be_a_configured_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"clean.charset: ja not among the directions' languages"):
        _cfg(tmp_path, [_row("a", "b")], [{"src": "en", "tgt": "de"}], clean={"charset": {"ja": 100}})
    with pytest.raises(ValueError, match="at least 1 character"):
        _cfg(tmp_path, [_row("a", "b")], [{"src": "en", "tgt": "de"}], clean={"charset": {"de": 0}})
