"""Prefect flows (the pipeline diagram) and the `mnaft` CLI on top of them."""

import os

# Before prefect is imported anywhere: no telemetry from an offline tool.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The first ephemeral server on a fresh machine migrates its database: seen to take longer than
# Prefect's 20 s default, failing the first `make demo`.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
