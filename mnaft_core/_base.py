"""The pydantic base every stage config derives from.

Stage configs double as Prefect flow parameters, so the UI renders them as forms: every field carries
a type, a description and, where numeric, bounds. ``extra="forbid"`` makes a misspelt key an error
instead of a silently ignored setting.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

ProgressFn = Callable[[int, int], None]
"""Called as ``(done, total)`` by long loops, so an orchestrator can show progress (never required)."""


class StrictModel(BaseModel):
    """Frozen, no unknown keys; hashable content for artifact keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON form: the config's share of an artifact key."""
        return hashlib.sha256(canonical_json(self.model_dump(mode="json")).encode()).hexdigest()


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal content hashes equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
