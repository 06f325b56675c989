"""manifest.json: what an artifact is, what made it, and the files it must contain."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from storage.errors import ManifestError
from storage.keys import validate_key, validate_relpath, validate_stage

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
_TRACKED_LIBRARIES = (
    "mnaft",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "pyarrow",
    "polars",
    "zarr",
    "prefect",
    "sacrebleu",
    "pillow",
    "numpy",
)


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="path relative to the artifact folder, '/'-separated")
    size: int = Field(ge=0, description="bytes")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        return validate_relpath(v)


class Manifest(BaseModel):
    """Written last: its presence with status 'complete' is what makes an artifact exist."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    stage: str
    key: str
    status: Literal["complete"] = "complete"
    inputs: dict[str, str] = Field(default_factory=dict, description="input name -> upstream artifact key")
    params: Any = Field(default=None, description="the stage parameters as JSON")
    code_version: str = ""
    files: list[FileEntry] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict, description="measurements made by the stage")
    created: str = Field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"))

    @field_validator("stage")
    @classmethod
    def _stage(cls, v: str) -> str:
        return validate_stage(v)

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        return validate_key(v)

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, v: dict[str, str]) -> dict[str, str]:
        for name, key in v.items():
            validate_key(key, what=f"input {name!r}")
        return v

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path: str) -> FileEntry:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> Manifest:
        try:
            return cls.model_validate_json(text)
        except ValidationError as err:
            raise ManifestError(f"{where}: invalid manifest: {err}") from err


def library_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (no imports, so it costs nothing)."""
    out = {"python": platform.python_version()}
    for name in _TRACKED_LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
