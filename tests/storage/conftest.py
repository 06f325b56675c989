from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import ArtifactStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback: the same wire protocol as MinIO in the compose stack."""
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket="mnaft")
    yield url
    server.stop()


def s3_options(endpoint: str) -> dict[str, object]:
    return {
        "endpoint_url": endpoint,
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"region_name": "us-east-1"},
    }


@pytest.fixture(params=["local", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """Every backend runs the same conformance tests."""
    if request.param == "local":
        return ArtifactStore(tmp_path / "store")
    if request.param == "memory":
        return ArtifactStore(f"memory://mnaft-{uuid.uuid4().hex}")
    endpoint = request.getfixturevalue("s3_endpoint")
    return ArtifactStore(f"s3://mnaft/{uuid.uuid4().hex}", storage_options=s3_options(endpoint))
