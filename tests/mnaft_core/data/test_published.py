"""Published datasets in their own layouts: MIT-10M (folder + zips), OCRMT30K v2.0, manifests."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from PIL import Image

from mnaft_core.data.build import build_dataset, build_part, finish_parts
from mnaft_core.data.card import write_card
from mnaft_core.data.config import DataConfig
from mnaft_core.data.fingerprint import data_fingerprints
from mnaft_core.data.types import BadInputError, DataError
from tests import published_layouts as layouts

SPLIT = {"max_train_per_direction": 50, "max_eval_per_direction": 20}
MIT_DIRS = [{"src": "en", "tgt": "zh"}, {"src": "zh", "tgt": "en"}, {"src": "ja", "tgt": "en"}]


def _mit_cfg(root: Path, **src: Any) -> DataConfig:
    directions, skip_bad = src.pop("directions", MIT_DIRS), src.pop("skip_bad", False)
    return DataConfig.model_validate(
        {
            "directions": directions,
            "sources": [{"kind": "mit10m", "path": str(root), "val_fraction": 0.3, **src}],
            "split": SPLIT,
            "skip_bad": skip_bad,
        }
    )


@pytest.fixture(scope="module")
def mit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return layouts.mit10m(tmp_path_factory.mktemp("mit10m"))


def test_mit10m_reads_folders_and_zips_keeping_bytes_fields_and_splits(
    mit_root: Path, tmp_path: Path
) -> None:
    b = build_dataset(_mit_cfg(mit_root), progress=False, out_dir=tmp_path)
    rows = b.table.to_pylist()
    counts = b.counts
    for d in ("en-zh", "zh-en", "ja-en"):
        assert counts[d]["test"] == len(layouts.TEST)
        assert counts[d]["train"] + counts[d]["val"] == len(layouts.TRAIN) and counts[d]["val"] > 0
    by_file = {r["image_file"]: r for r in rows}
    with zipfile.ZipFile(mit_root / "en.zip") as zf:  # members `en/...`, read in place
        assert by_file["en/train_000.jpg"]["image"] == zf.read("en/train_000.jpg")
    with zipfile.ZipFile(mit_root / "ja.zip") as zf:  # members without the prefix
        assert by_file["ja/test_012.jpg"]["image"] == zf.read("test_012.jpg")
    assert by_file["zh/test_011.jpg"]["image"] == (mit_root / "zh/test_011.jpg").read_bytes()
    r = by_file["ja/test_012.jpg"]
    assert Image.open(io.BytesIO(r["image"])).format == "JPEG"  # stored as is, not re-encoded
    assert (r["split"], r["src_text"], r["tgt_text"], r["script"]) == (
        "test",
        layouts.JA[12],
        "Paste",
        "Jpan",
    )
    assert (r["category"], r["category_id"], r["difficulty"], r["box_count"], r["record_id"]) == (
        "sign", "0", "easy", "1", "ja-en-test-12"
    )  # fmt: skip
    assert "size" not in r  # MIT-10M's records have no size field: no column unless size_field names one
    assert all(r["split"] == "test" for r in rows if "/test_" in r["image_file"])
    assert len({r["id"] for r in rows}) == len(rows)


def test_mit10m_filters(mit_root: Path, tmp_path: Path) -> None:
    root = layouts.mit10m(tmp_path / "sized", size_field="img_size")  # a copy with a size field added
    only = {"categories": ["menu"], "sizes": ["small", "large"], "size_field": "img_size",
            "directions": [{"src": "zh", "tgt": "en"}]}  # fmt: skip
    b = build_dataset(_mit_cfg(root, **only, skip_bad=True), progress=False)  # few rows: a split empty
    rows = b.table.to_pylist()
    assert rows and {r["direction"] for r in rows} == {"zh-en"}
    assert {r["category"] for r in rows} == {"menu"} and {r["size"] for r in rows} == {"small", "large"}
    cats = build_dataset(
        _mit_cfg(mit_root, categories=["1"], difficulties=["hard"], skip_bad=True), progress=False
    )
    assert {(r["category_id"], r["difficulty"]) for r in cats.table.to_pylist()} == {("1", "hard")}
    with pytest.raises(DataError, match="no field 'dims' to filter `sizes` on"):
        build_dataset(_mit_cfg(mit_root, sizes=["x"], size_field="dims"), progress=False)
    with pytest.raises(ValueError, match=r"`sizes` needs `size_field`.*no size field"):
        _mit_cfg(mit_root, sizes=["small"])


def test_ocrmt30k_crops_lines_to_boxes_else_whole_image(tmp_path: Path) -> None:
    v2 = layouts.ocrmt30k(tmp_path / "ocrmt")
    cfg = DataConfig.model_validate(
        {
            "directions": [{"src": "zh", "tgt": "en"}],
            "sources": [{"kind": "ocrmt30k", "path": str(v2)}],
            "split": SPLIT,
        }
    )
    rows = build_dataset(cfg, progress=False).table.to_pylist()
    assert {r["split"] for r in rows} == {"train", "val", "test"}  # published split, valid -> val
    first = [r for r in rows if r["image_file"] == "OCRMT30K_00000.jpg"]
    assert len(first) == 2 and {(r["width"], r["height"]) for r in first} == {(58, 18), (80, 30)}
    assert {r["line"] for r in first} == {"1", "2"}
    whole = next(r for r in rows if r["image_file"] == "OCRMT30K_00001.jpg")
    assert (whole["width"], whole["height"]) == (96, 64) and whole["line"] == "3-3"
    assert whole["image"] == (v2 / "whole_image_v2/OCRMT30K_00001.jpg").read_bytes()
    assert len(rows) == 9 + 3  # 9 images, the first of each split with two cropped lines


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_manifest_in_every_format(tmp_path: Path, fmt: str) -> None:
    path = layouts.manifest(tmp_path, fmt)
    cfg = DataConfig.model_validate(
        {
            "directions": [{"src": "en", "tgt": "ja"}, {"src": "ja", "tgt": "en"}],
            "sources": [
                {
                    "kind": "manifest",
                    "path": str(path),
                    "columns": layouts.MANIFEST_COLUMNS,
                    "extra_columns": ["category"],
                }
            ],
            "split": SPLIT,
        }
    )
    rows = build_dataset(cfg, progress=False).table.to_pylist()
    assert len(rows) == 2 * len(layouts.EN)
    assert {r["category"] for r in rows} == set(layouts.CATEGORIES)
    r = next(r for r in rows if r["direction"] == "en-ja" and r["src_text"] == "Save")
    assert (r["tgt_text"], r["split"]) == ("保存", "train")
    assert r["image"] == (tmp_path / "images/en_02.png").read_bytes()


@pytest.mark.parametrize("kind", layouts.BROKEN_KINDS)
def test_bad_record_stops_the_build_naming_file_and_line(tmp_path: Path, kind: str) -> None:
    root = layouts.mit10m(tmp_path)
    line = layouts.add_mit10m_broken(root, (kind,))[kind]
    with pytest.raises(BadInputError, match=rf"ZH\.jsonl:{line}: .*skip_bad"):
        build_dataset(_mit_cfg(root), progress=False)


def test_skip_bad_skips_and_counts_each_kind_in_the_card(tmp_path: Path) -> None:
    root = layouts.mit10m(tmp_path / "mit", broken=True)
    b = build_dataset(_mit_cfg(root, skip_bad=True), progress=False)
    card = write_card(b, tmp_path / "card")
    assert card["skipped_bad"] == dict.fromkeys(sorted(layouts.BROKEN_KINDS), 1)
    assert "ZH.jsonl:" in card["first_bad"]["corrupt_image"]
    assert "Bad records skipped" in (tmp_path / "card/card.md").read_text()


def test_ocrmt30k_bad_lines_and_empty_split(tmp_path: Path) -> None:
    v2 = layouts.ocrmt30k(tmp_path / "o", broken=True)
    cfg = {"directions": [{"src": "zh", "tgt": "en"}], "sources": [{"kind": "ocrmt30k", "path": str(v2)}],
           "split": SPLIT}  # fmt: skip
    with pytest.raises(BadInputError, match=r"line files of different lengths: image_valid\.txt 3 lines"):
        build_dataset(DataConfig.model_validate(cfg), progress=False)
    b = build_dataset(DataConfig.model_validate({**cfg, "skip_bad": True}), progress=False)
    assert dict(b.skipped_bad) == {"misaligned_lines": 1, "missing_image": 1, "corrupt_image": 1,
                                   "empty_split": 1}  # fmt: skip
    assert "image_test.txt:" in b.first_bad["missing_image"]
    assert b.first_bad["empty_split"] == "direction zh-en: split 'val' has no rows"
    empty = v2 / "after_proprecess/before_tok_bpe"
    for kind in ("image", "ocr_zh", "ocr_en"):
        (empty / f"{kind}_valid.txt").write_text("")
    with pytest.raises(BadInputError, match=r"image_valid\.txt: split 'valid' has no lines"):
        build_dataset(DataConfig.model_validate(cfg), progress=False)


def test_unknown_language_in_a_manifest_names_its_line(tmp_path: Path) -> None:
    path = layouts.manifest(tmp_path, "csv", broken=True)
    cfg = {"directions": [{"src": "en", "tgt": "ja"}],
           "sources": [{"kind": "manifest", "path": str(path), "columns": layouts.MANIFEST_COLUMNS}],
           "split": SPLIT}  # fmt: skip
    with pytest.raises(BadInputError, match=r"manifest\.csv:30: image 'images/none\.png' not found"):
        build_dataset(DataConfig.model_validate(cfg), progress=False)
    b = build_dataset(DataConfig.model_validate({**cfg, "skip_bad": True}), progress=False)
    assert dict(b.skipped_bad) == {"missing_image": 1, "corrupt_image": 1, "unknown_language": 1}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_parts_give_the_same_file_as_one_part(mit_root: Path, tmp_path: Path) -> None:
    cfg = _mit_cfg(mit_root)
    one = build_dataset(cfg, progress=False, out_dir=tmp_path / "one")
    folder = tmp_path / "three"
    for part in (2, 0, 1):  # any order, as workers finish
        build_part(cfg, part, 3, folder, progress=False)
    three = finish_parts(cfg, folder, 3)
    assert one.table.num_rows > 3 and _sha(one.path) == _sha(three.path)
    assert not (folder / "parts").exists()
    assert json.loads(json.dumps(three.counts)) == one.counts
    assert list(three.drops_by_direction.items()) == list(one.drops_by_direction.items())  # same order
    with pytest.raises(DataError, match=r"parts .* are not written yet"):
        finish_parts(cfg, tmp_path / "none", 2)


def _zh_en_table(tmp_path: Path) -> Path:
    path = tmp_path / "zh-en.jsonl"
    rows = [
        {"src_text": z, "tgt_text": e, "sl": "zh", "tl": "en"}
        for z, e in zip(layouts.ZH, layouts.EN, strict=True)
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("caps", [(10_000, 10_000), (6, 2)], ids=["all-rows", "capped"])
def test_spilled_references_write_the_same_file_as_in_memory(
    mit_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caps: tuple[int, int]
) -> None:
    """Past `ranked.SPILL_AT` references the records go to run files and come back in the same order:
    the same bytes (text pairs merged with image records included), in one part or three."""
    from mnaft_core.data import ranked

    table = {
        "kind": "table",
        "path": str(_zh_en_table(tmp_path)),
        "columns": {"src_lang": "sl", "tgt_lang": "tl"},
    }
    split = {"max_train_per_direction": caps[0], "max_eval_per_direction": caps[1]}
    mit = {"kind": "mit10m", "path": str(mit_root), "val_fraction": 0.3}
    mixed = DataConfig.model_validate({"directions": MIT_DIRS, "sources": [mit, table], "split": split})
    images = DataConfig.model_validate({"directions": MIT_DIRS, "sources": [mit], "split": split})
    memory = {n: build_dataset(c, progress=False, out_dir=tmp_path / f"memory-{n}")
              for n, c in (("mixed", mixed), ("images", images))}  # fmt: skip
    spills = []
    real_spill = ranked.RankedRefs.spill

    def spill(self: ranked.RankedRefs) -> None:
        spills.append(self.held)
        real_spill(self)

    monkeypatch.setattr(ranked.RankedRefs, "spill", spill)
    monkeypatch.setattr(ranked, "SPILL_AT", 3)
    monkeypatch.setattr(ranked, "FAN_IN", 2)
    spilled = build_dataset(mixed, progress=False, out_dir=tmp_path / "spilled")
    assert len(spills) > 5 and max(spills) == 3
    assert memory["mixed"].table.num_rows > len(layouts.EN) and _sha(spilled.path) == _sha(
        memory["mixed"].path
    )
    zh_en = spilled.table.filter(pc.equal(spilled.table["direction"], "zh-en"))
    assert set(zh_en["origin"].to_pylist()) == {"mit10m", "table"}  # text pairs merged with image records
    folder = tmp_path / "parts"
    for part in (1, 0, 2):
        build_part(images, part, 3, folder, progress=False)
    assert _sha(finish_parts(images, folder, 3).path) == _sha(memory["images"].path)
    assert not list(tmp_path.glob("**/.spill-*"))  # the spill folders are gone


def test_key_fingerprints_follow_the_files(mit_root: Path, tmp_path: Path) -> None:
    root = layouts.mit10m(tmp_path / "m")
    cfg = _mit_cfg(root)
    before = data_fingerprints(cfg)
    assert before == data_fingerprints(cfg)
    (root / "zh" / "train_000.jpg").write_bytes(layouts.image_bytes(7) + b"\0")
    after = data_fingerprints(cfg)
    assert after != before


def test_zh_and_ja_text_is_rendered_with_a_cjk_font(tmp_path: Path) -> None:
    rows = [
        {"src_text": z, "tgt_text": e, "sl": "zh_CN", "tl": "en"}
        for z, e in zip(layouts.ZH, layouts.EN, strict=True)
    ]
    rows += [
        {"src_text": j, "tgt_text": e, "sl": "ja", "tl": "en"}
        for j, e in zip(layouts.JA, layouts.EN, strict=True)
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cfg = DataConfig.model_validate(
        {
            "directions": [{"src": "zh", "tgt": "en"}, {"src": "ja", "tgt": "en"}],
            "sources": [
                {"kind": "table", "path": str(path), "columns": {"src_lang": "sl", "tgt_lang": "tl"}}
            ],
            "split": {**SPLIT, "val_fraction": 0.2, "test_fraction": 0.2},
        }
    )
    out = build_dataset(cfg, progress=False).table.to_pylist()
    assert {(r["direction"], r["script"]) for r in out} == {("zh-en", "Hans"), ("ja-en", "Jpan")}
    assert all("CJK" in r["font"] for r in out)  # a face covering every character: no tofu


def test_manifest_fingerprint_follows_the_images_it_names(tmp_path: Path) -> None:
    path = layouts.manifest(tmp_path, "jsonl")
    cfg = DataConfig.model_validate(
        {
            "directions": [{"src": "en", "tgt": "ja"}],
            "sources": [{"kind": "manifest", "path": str(path), "columns": layouts.MANIFEST_COLUMNS}],
        }
    )
    before = data_fingerprints(cfg)
    (tmp_path / "unrelated.txt").write_text("not part of the dataset")
    assert data_fingerprints(cfg) == before
    (tmp_path / "images/en_03.png").write_bytes(layouts.image_bytes(99, fmt="PNG"))
    assert data_fingerprints(cfg) != before


def test_images_over_the_pixel_limit_are_bad_records_refused_undecoded(mit_root: Path) -> None:
    """``data.max_pixels`` (decompression bombs): over it, an image stops the build naming its record
    and size, or with skip_bad is counted as corrupt; at the default the same tree builds."""
    cfg = _mit_cfg(mit_root).model_copy(update={"max_pixels": 100})
    over = r"\.jsonl:\d+: .*pixels, over data\.max_pixels \(100\); not decoded"
    with pytest.raises(BadInputError, match=over):
        build_dataset(cfg, progress=False)
    with pytest.raises(DataError, match=r"no usable pairs .*bad records skipped \{'corrupt_image': \d+\}"):
        build_dataset(cfg.model_copy(update={"skip_bad": True}), progress=False)  # every image is too big
    assert build_dataset(_mit_cfg(mit_root), progress=False).table.num_rows > 0
