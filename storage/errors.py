"""The store's error hierarchy. Every message names the store, the artifact and the file at fault."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of everything the artifact store raises."""


class InvalidNameError(StoreError, ValueError):
    """A stage name, key, ref name or relative path that could escape or corrupt the store layout."""


class ArtifactNotFoundError(StoreError, KeyError):
    """No complete artifact with that stage/key (or key prefix)."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else "artifact not found"


class AmbiguousKeyError(StoreError, ValueError):
    """A key prefix that matches more than one artifact."""


class IntegrityError(StoreError):
    """A complete-looking artifact whose files disagree with its manifest (missing, resized, tampered)."""


class ManifestError(StoreError):
    """A manifest.json that cannot be read or parsed."""


class BuildLockedError(StoreError):
    """Another process holds the build lock of the artifact key, and waiting for it ran out."""
