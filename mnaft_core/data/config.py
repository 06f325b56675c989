"""Configuration of the data stage: where parallel text comes from, how it is cleaned, split and rendered."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from mnaft_core._base import StrictModel
from mnaft_core.images import DEFAULT_MAX_PIXELS

LangTag = Annotated[
    str, Field(min_length=2, max_length=35, description="BCP-47 language tag, e.g. de or zh-Hans")
]


class Direction(StrictModel):
    """One translation direction, source -> target."""

    src: LangTag
    tgt: LangTag

    @model_validator(mode="after")
    def _distinct(self) -> Direction:
        if self.src == self.tgt:
            raise ValueError(f"direction {self.src}->{self.tgt}: source and target must differ")
        return self

    @property
    def name(self) -> str:
        return f"{self.src}-{self.tgt}"


class TableColumns(StrictModel):
    """Column names of a parallel-text table. Language columns are optional when fixed in the source."""

    src_text: str = Field("src_text", description="column holding the source sentence")
    tgt_text: str = Field("tgt_text", description="column holding the reference translation")
    src_lang: str | None = Field(None, description="column holding the source language tag, if per row")
    tgt_lang: str | None = Field(None, description="column holding the target language tag, if per row")


class TableSource(StrictModel):
    """Parallel text in a TSV, JSONL or Parquet file."""

    kind: Literal["table"] = Field("table", description="source type")
    path: Path = Field(description="file to read (.tsv, .jsonl or .parquet)")
    format: Literal["auto", "tsv", "jsonl", "parquet"] = Field(
        "auto", description="file format; auto = by suffix"
    )
    columns: TableColumns = Field(default_factory=TableColumns, description="column mapping")
    src_lang: LangTag | None = Field(None, description="source language when the file has no language column")
    tgt_lang: LangTag | None = Field(None, description="target language when the file has no language column")


class GettextSource(StrictModel):
    """Human translations of software messages from gettext catalogs (msgid is English)."""

    kind: Literal["gettext"] = Field("gettext", description="source type")
    location: Literal["system", "packages", "directory"] = Field(
        "system",
        description="system: the OS locale directory; packages: catalogs inside installed Python packages; "
        "directory: the folder given in `path`",
    )
    path: Path | None = Field(None, description="folder of .po/.mo files (location=directory)")
    packages: list[str] = Field(
        default_factory=list, description="Python packages to scan when location=packages (e.g. django)"
    )
    languages: list[LangTag] = Field(default_factory=list, description="languages to read; empty = as needed")
    max_pairs_per_language: int = Field(20000, ge=1, le=10_000_000, description="cap per language")

    @model_validator(mode="after")
    def _path_for_directory(self) -> GettextSource:
        if self.location == "directory" and self.path is None:
            raise ValueError("gettext source with location=directory needs `path`")
        return self


CldrCategory = Literal["territories", "languages", "currencies", "units", "months", "days"]


class CldrSource(StrictModel):
    """CLDR display names (through babel): short, real, aligned strings for every locale."""

    kind: Literal["cldr"] = Field("cldr", description="source type")
    categories: tuple[CldrCategory, ...] = Field(
        ("territories", "languages", "currencies", "units", "months", "days"),
        description="which CLDR name tables to pair up",
    )


class RenderedColumns(StrictModel):
    """Column mapping of an already-rendered image-translation dataset."""

    image: str = Field("image", description="column of encoded image bytes (or {'bytes': ...} structs)")
    src_text: str = Field("src_text", description="column of the text shown in the image")
    tgt_text: str = Field("tgt_text", description="column of the reference translation")
    src_lang: str | None = Field("src_lang", description="source language column, or null if fixed")
    tgt_lang: str | None = Field("tgt_lang", description="target language column, or null if fixed")


class RenderedSource(StrictModel):
    """An image-translation dataset on disk (Parquet file/folder or a `datasets` save_to_disk folder)."""

    kind: Literal["rendered"] = Field("rendered", description="source type")
    path: Path = Field(description="Parquet file, folder of Parquet files, or datasets folder")
    columns: RenderedColumns = Field(default_factory=RenderedColumns, description="column mapping")
    src_lang: LangTag | None = Field(None, description="source language when the data has no column for it")
    tgt_lang: LangTag | None = Field(None, description="target language when the data has no column for it")


class Mit10mSource(StrictModel):
    """MIT-10M (Li, Zhu, Wen, COLING 2025) as published: `{train,test}/<LANG>.jsonl` + image archives.

    Layout (huggingface.co/datasets/liboaccn/MIT-10M, whose files are gated behind a sign-in; checked
    on 2026-12-03 against a public script that reads the published `train/<LANG>.jsonl` and
    `test/<LANG>.jsonl` and takes from each record `id`, `img`, `src_lang`, `tgt_lang`, `src_text`,
    `tgt_text`, `box_cnt`, `difficulty`, `cate_id`, `cate_name`, `split`, the archive being the first
    component of `img`): one JSON record per line with those fields. Images are looked up as
    `<path>/<img>` (or under `images/`), else inside the per-language archive `<archive>.zip` (member
    `<img>` or `<file>`), read from the zip without extracting it. The dataset card and paper speak of
    images "in three sizes", but no record field for it turned up in the published layout, so there is
    no default: `sizes` filters on the field named by `size_field` (for a copy that adds one), and the
    `size` column exists only then.
    """

    kind: Literal["mit10m"] = Field("mit10m", description="source type")
    path: Path = Field(description="the MIT-10M folder (holding train/ and test/)")
    languages: list[LangTag] = Field(
        default_factory=list, description="keep pairs whose both languages are listed; empty = all"
    )
    directions: list[Direction] = Field(
        default_factory=list, description="keep only these directions; empty = data.directions"
    )
    sizes: list[str] = Field(
        default_factory=list, description="keep these values of `size_field` (which must be set); empty = all"
    )
    size_field: str | None = Field(
        None, description="record field holding an image size class (MIT-10M's records have none)"
    )
    categories: list[str] = Field(
        default_factory=list, description="keep these categories (cate_name or cate_id); empty = all"
    )
    difficulties: list[str] = Field(default_factory=list, description="keep these difficulties; empty = all")
    val_fraction: float = Field(
        0.05, ge=0.0, lt=1.0, description="share of the published train split (by source text) kept as val"
    )
    max_side: int | None = Field(
        None, ge=16, le=16384, description="downscale larger images to this longer side (stored as PNG)"
    )

    @model_validator(mode="after")
    def _sizes_need_a_field(self) -> Mit10mSource:
        if self.sizes and self.size_field is None:
            raise ValueError(
                "mit10m: `sizes` needs `size_field`, the record field to filter on: MIT-10M's published "
                "records have no size field (their fields: id, img, src_lang, tgt_lang, src_text, "
                "tgt_text, split, cate_id, cate_name, difficulty, box_cnt)"
            )
        return self


class Ocrmt30kSource(StrictModel):
    """OCRMT30K v2.0 (Lan et al., ACL 2023) as published: zh scene-text lines with English translations.

    Layout (github.com/DeepLearnXMU/mc_tit, ocrmt30k_data/README.md): `whole_image_v2/` images;
    `after_proprecess/before_tok_bpe/image_{train,valid,test}.txt` (one image name per text line) with
    the line-aligned `ocr_zh_*.txt` and `ocr_en_*.txt`; `raw_data/<image stem>.txt` lines
    `x1,y1,...,xn,yn,text` (the box polygon, then the text).
    """

    kind: Literal["ocrmt30k"] = Field("ocrmt30k", description="source type")
    path: Path = Field(description="the v2.0 folder (holding whole_image_v2/ and after_proprecess/)")
    boxes: Literal["auto", "whole"] = Field(
        "auto",
        description="auto: one sample per line cropped to its raw_data box where every line of the image "
        "has one, else the whole image with its lines in order; whole: always the whole image",
    )
    max_side: int | None = Field(
        None, ge=16, le=16384, description="downscale larger images to this longer side (stored as PNG)"
    )


class ManifestColumns(StrictModel):
    """Column names of an image manifest."""

    image: str = Field("image", description="column of the image path (relative to the manifest's folder)")
    src_text: str = Field("src_text", description="column of the text shown in the image")
    tgt_text: str = Field("tgt_text", description="column of the reference translation")
    src_lang: str | None = Field("src_lang", description="source language column, or null if fixed")
    tgt_lang: str | None = Field("tgt_lang", description="target language column, or null if fixed")
    split: str | None = Field(None, description="column of the dataset's own split (train/val/test), if any")


class ManifestSource(StrictModel):
    """Any image-translation dataset: a CSV/TSV/JSONL/Parquet manifest of image paths and texts."""

    kind: Literal["manifest"] = Field("manifest", description="source type")
    path: Path = Field(description="manifest file (.csv, .tsv, .jsonl or .parquet)")
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet"] = Field("auto", description="auto = by suffix")
    columns: ManifestColumns = Field(default_factory=ManifestColumns, description="column mapping")
    src_lang: LangTag | None = Field(None, description="source language when the file has no column for it")
    tgt_lang: LangTag | None = Field(None, description="target language when the file has no column for it")
    extra_columns: list[str] = Field(
        default_factory=list, description="further manifest columns kept as dataset columns (as text)"
    )
    max_side: int | None = Field(
        None, ge=16, le=16384, description="downscale larger images to this longer side (stored as PNG)"
    )

    @field_validator("extra_columns")
    @classmethod
    def _extra_names(cls, v: list[str]) -> list[str]:
        reserved = set(BASE_COLUMNS)
        bad = [c for c in v if c in reserved]
        if bad:
            raise ValueError(f"extra_columns {bad} clash with dataset columns {sorted(reserved)}")
        return v


# Columns of the dataset table every build has (the extra columns of image sources come after them).
BASE_COLUMNS = (
    "id", "split", "direction", "src_lang", "tgt_lang", "script", "src_text", "tgt_text", "image",
    "width", "height", "font", "style", "boxes", "origin",
)  # fmt: skip
MIT10M_EXTRA = ("record_id", "image_file", "category", "category_id", "difficulty", "box_count")
OCRMT30K_EXTRA = ("image_file", "line")


Source = Annotated[
    TableSource
    | GettextSource
    | CldrSource
    | RenderedSource
    | Mit10mSource
    | Ocrmt30kSource
    | ManifestSource,
    Field(discriminator="kind"),
]

IMAGE_SOURCES = (Mit10mSource, Ocrmt30kSource, ManifestSource)


class CleanConfig(StrictModel):
    """Filters applied to every text pair before splitting."""

    placeholders: Literal["strip", "drop"] = Field(
        "strip",
        description="format placeholders (%s, {name}): strip them from the text, or drop the pair "
        "(stripping one mid-sentence leaves a fragment)",
    )
    one_target_per_source: bool = Field(
        True,
        description="keep only the first translation of each source string per direction "
        "(catalogs translate the same word several ways)",
    )
    min_chars: int = Field(1, ge=1, le=1000, description="drop pairs whose cleaned source is shorter")
    max_chars: int = Field(
        48, ge=1, le=10_000, description="drop pairs whose cleaned source or target is longer"
    )
    max_words: int = Field(8, ge=1, le=1000, description="drop pairs whose source has more words")
    charset: dict[str, int] = Field(
        default_factory=dict,
        description="per language, e.g. {zh-Hans: 500}: keep only pairs whose text in that language uses "
        "its N most frequent characters alone (counted over the distinct cleaned texts of that language "
        "in the configured text pairs; rendered text sources only); for a small model that cannot learn "
        "a whole CJK inventory",
    )

    @field_validator("charset")
    @classmethod
    def _charset_sizes(cls, v: dict[str, int]) -> dict[str, int]:
        for lang, n in v.items():
            if n < 1:
                raise ValueError(f"charset[{lang!r}]: the inventory must hold at least 1 character (got {n})")
        return v


class SplitConfig(StrictModel):
    """Hash split by source text: no source string lands in two splits."""

    val_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="share of source strings in validation")
    test_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="share of source strings in test")
    salt: str = Field("mnaft", description="salt of the split hash; change it for another split")
    max_train_per_direction: int = Field(
        4000, ge=1, le=10_000_000, description="cap of train pairs per direction"
    )
    max_eval_per_direction: int = Field(
        200, ge=1, le=1_000_000, description="cap of val/test pairs per direction"
    )

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1 (got {self.val_fraction} + {self.test_fraction})"
            )
        return self


class RenderConfig(StrictModel):
    """Seeded distribution of rendering styles; the same seed gives the same pixels."""

    height: int = Field(32, ge=8, le=2048, description="image height in pixels")
    max_width: int = Field(256, ge=16, le=8192, description="image width cap in pixels (text wraps beyond)")
    font_size: tuple[int, int] = Field((16, 22), description="font size range in pixels (min, max)")
    max_lines: int = Field(2, ge=1, le=32, description="maximum wrapped lines per image")
    min_font_size: int = Field(
        9,
        ge=4,
        le=512,
        description="smallest font size tried when shrinking text to fit; below it the pair is dropped",
    )
    padding: tuple[int, int] = Field((2, 8), description="padding range in pixels (min, max)")
    rotation_deg: float = Field(2.0, ge=0.0, le=45.0, description="maximum absolute rotation in degrees")
    blur: float = Field(0.6, ge=0.0, le=5.0, description="maximum Gaussian blur radius")
    backgrounds: tuple[Literal["flat", "gradient", "noise"], ...] = Field(
        ("flat", "gradient", "noise"), min_length=1, description="background kinds to draw from"
    )
    min_contrast: float = Field(0.45, ge=0.0, le=1.0, description="minimum luminance gap text vs background")
    font_dirs: list[Path] = Field(default_factory=list, description="extra folders searched for fonts first")

    @field_validator("font_size", "padding")
    @classmethod
    def _ordered(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 0 or v[0] > v[1]:
            raise ValueError(f"range must be (min, max) with 0 <= min <= max, got {v}")
        return v

    @model_validator(mode="after")
    def _min_font_size(self) -> RenderConfig:
        if self.min_font_size > self.font_size[1]:
            raise ValueError(
                f"render.min_font_size ({self.min_font_size}) exceeds the largest "
                f"font_size ({self.font_size[1]})"
            )
        return self


class DataConfig(StrictModel):
    """The data stage: sources -> cleaned pairs -> hash split -> rendered images (Parquet artifact)."""

    directions: list[Direction] = Field(
        min_length=1, description="translation directions to build, e.g. [{src: en, tgt: de}]"
    )
    sources: list[Source] = Field(min_length=1, description="parallel-text sources, read in order")
    clean: CleanConfig = Field(default_factory=CleanConfig, description="text filters")
    split: SplitConfig = Field(default_factory=SplitConfig, description="train/val/test split")
    render: RenderConfig = Field(default_factory=RenderConfig, description="rendering styles")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of sampling and rendering")
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        ge=1,
        description="a carried image larger than this (width x height) is a bad record, refused before it "
        "is decoded (decompression bombs)",
    )
    skip_bad: bool = Field(
        False,
        description="skip bad records (missing or corrupt image, unknown language, misaligned line files, "
        "empty split) and count them by reason in the dataset card; false = stop at the first, naming it",
    )

    @field_validator("directions")
    @classmethod
    def _unique_directions(cls, v: list[Direction]) -> list[Direction]:
        names = [d.name for d in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate directions: {', '.join(dupes)}")
        return v

    @model_validator(mode="after")
    def _charset_languages(self) -> DataConfig:
        unknown = sorted(set(self.clean.charset) - set(self.languages))
        if unknown:
            raise ValueError(
                f"clean.charset: {', '.join(unknown)} not among the directions' languages "
                f"({', '.join(self.languages)})"
            )
        return self

    def extra_columns(self) -> list[str]:
        """Dataset columns beyond BASE_COLUMNS: the published datasets' own fields, in source order."""
        out: dict[str, None] = {}
        for src in self.sources:
            if isinstance(src, Mit10mSource):
                out.update(dict.fromkeys(MIT10M_EXTRA + (("size",) if src.size_field else ())))
            elif isinstance(src, Ocrmt30kSource):
                out.update(dict.fromkeys(OCRMT30K_EXTRA))
            elif isinstance(src, ManifestSource):
                out.update(dict.fromkeys(src.extra_columns))
        return list(out)

    @property
    def languages(self) -> list[str]:
        """All languages in the configured directions, in first-seen order."""
        seen: dict[str, None] = {}
        for d in self.directions:
            seen.setdefault(d.src)
            seen.setdefault(d.tgt)
        return list(seen)
