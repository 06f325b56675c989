"""Prefect tasks: thin wrappers that unpack config, call mnaft_core and publish through storage."""

import os

# Before prefect is imported anywhere: no telemetry from an offline tool.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
