"""Test-wide settings: offline, no telemetry, a private Prefect home, one shared Prefect harness."""

from __future__ import annotations

import os
import tempfile

os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="mnaft-prefect-home-"))
os.environ.setdefault("MNAFT_CACHE", tempfile.mkdtemp(prefix="mnaft-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")
