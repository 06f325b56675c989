"""The artifact store: every stage output, content-keyed, under one local folder or fsspec URL."""

from storage.errors import (
    AmbiguousKeyError,
    ArtifactNotFoundError,
    BuildLockedError,
    IntegrityError,
    InvalidNameError,
    ManifestError,
    StoreError,
)
from storage.gc import GcPlan, plan_gc, run_gc
from storage.keys import code_version, content_key, validate_key, validate_relpath, validate_stage
from storage.manifest import MANIFEST_NAME, FileEntry, Manifest
from storage.store import Artifact, ArtifactStore, ArtifactWriter

__all__ = [
    "MANIFEST_NAME",
    "AmbiguousKeyError",
    "Artifact",
    "ArtifactNotFoundError",
    "ArtifactStore",
    "ArtifactWriter",
    "BuildLockedError",
    "FileEntry",
    "GcPlan",
    "IntegrityError",
    "InvalidNameError",
    "Manifest",
    "ManifestError",
    "StoreError",
    "code_version",
    "content_key",
    "plan_gc",
    "run_gc",
    "validate_key",
    "validate_relpath",
    "validate_stage",
]
