"""docker-compose.yml's structure: the services, their health checks, and no committed secrets."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_services_and_healthchecks() -> None:
    services = _compose()["services"]
    assert {"postgres", "minio", "minio-init", "prefect-server", "worker-cpu", "worker-gpu"} <= set(services)
    for name in ("postgres", "minio", "prefect-server"):
        assert "test" in services[name]["healthcheck"], name
    server = services["prefect-server"]
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "postgresql+asyncpg://" in server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert server["environment"]["PREFECT_SERVER_API_AUTH_STRING"].startswith("${PREFECT_AUTH")


def test_workers_point_at_server_and_minio() -> None:
    services = _compose()["services"]
    for name, pool in (("worker-cpu", "cpu"), ("worker-gpu", "gpu")):
        w = services[name]
        assert f"--pool {pool}" in w["command"]
        env = w["environment"]
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert env["MNAFT_STORE"].startswith("s3://")
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert env["MNAFT_STORE_HTTP"].endswith("/${MINIO_BUCKET:-mnaft}/store")  # the anonymous-read prefix
        assert env["PREFECT_API_AUTH_STRING"].startswith("${PREFECT_AUTH")
        assert w["depends_on"]["prefect-server"]["condition"] == "service_healthy"
        assert w["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "mc mb" in services["minio-init"]["entrypoint"]


def test_secrets_come_from_an_uncommitted_env_file() -> None:
    example = (ROOT / ".env.example").read_text()
    lines = [line for line in example.splitlines() if "=" in line and not line.startswith("#")]
    keys = {line.split("=", 1)[0] for line in lines}
    text = (ROOT / "docker-compose.yml").read_text()
    for var in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "PREFECT_AUTH"):
        assert var in keys and f"${{{var}" in text
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, ".env must be ignored by git"
