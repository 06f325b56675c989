"""What the Prefect UI shows of a stage: pictures (image/link artifacts over http, or inline), progress."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from storage import ArtifactStore
from tasks._stage import (
    INLINE_MAX_BYTES,
    INLINE_TOTAL_CHARS,
    artifact_key,
    show_pictures,
    stage_progress,
    with_pictures,
)

KEY = "00112233aabbccdd"


def _store(tmp_path: Path) -> str:
    st = ArtifactStore(tmp_path / "store")
    with st.writer("select", KEY) as w:
        (w.dir / "sample_embedding_language.png").write_bytes(b"\x89PNG small")
        (w.dir / "big.png").write_bytes(b"\x89PNG" + b"0" * (INLINE_MAX_BYTES + 1))
        (w.dir / "table.parquet").write_bytes(b"not a picture")
    return st.url


@flow
def _show(store: str) -> str:
    return show_pictures(store, "select", KEY)


def _artifact(key: str) -> object:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC
        )
    assert found, f"no artifact {key!r}"
    return found[0]  # the newest: other tests in the session create artifacts with the same keys


@pytest.mark.usefixtures("prefect_harness")
def test_stored_reports_lose_their_dead_relative_pictures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNAFT_STORE_HTTP", "http://127.0.0.1:4280")
    store = _store(tmp_path)

    @flow
    def show() -> str:
        card = "# Card\n\n![plot](sample_embedding_language.png)\n![web](http://x/y.png)\n"
        return with_pictures(card, store, "select", KEY)

    md = show()
    assert "](sample_embedding_language.png)" not in md and "![web](http://x/y.png)" in md
    assert (
        f"![sample_embedding_language](http://127.0.0.1:4280/select/{KEY}/sample_embedding_language.png)"
        in md
    )


def test_artifact_keys_follow_prefects_rules() -> None:
    assert artifact_key("select-sample_embedding_language") == "select-sample-embedding-language"
    assert artifact_key("Mask: mnaft/v2") == "mask-mnaft-v2"


@pytest.mark.usefixtures("prefect_harness")
def test_pictures_link_to_the_served_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNAFT_STORE_HTTP", "http://127.0.0.1:4280")
    md = _show(_store(tmp_path))
    url = f"http://127.0.0.1:4280/select/{KEY}/sample_embedding_language.png"
    assert f"![sample_embedding_language]({url})" in md
    assert "table.parquet" not in md and "data:image" not in md
    image = _artifact("select-sample-embedding-language")
    assert image.type == "image" and image.data == url  # type: ignore[attr-defined]
    link = _artifact("select-files")
    assert link.type == "markdown" and f"http://127.0.0.1:4280/select/{KEY}/" in str(link.data)  # type: ignore[attr-defined]


@pytest.mark.usefixtures("prefect_harness")
def test_pictures_inline_without_a_served_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNAFT_STORE_HTTP", raising=False)
    md = _show(_store(tmp_path))
    assert "![sample_embedding_language](data:image/png;base64," in md
    assert "big.png` (0.5 MiB; set MNAFT_STORE_HTTP" in md


@pytest.mark.usefixtures("prefect_harness")
def test_inline_pictures_stop_at_the_artifacts_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each picture is under the per-picture limit, but all of them inline would make an artifact whose
    event Prefect refuses to publish (over 1.5 MB): past the budget they are named by store path."""
    monkeypatch.delenv("MNAFT_STORE_HTTP", raising=False)
    st = ArtifactStore(tmp_path / "store")
    size = 400 * 1024
    with st.writer("select", KEY) as w:
        for i in range(4):
            (w.dir / f"plot_{i}.png").write_bytes(b"\x89PNG" + bytes([i]) * (size - 4))
    md = _show(st.url)
    assert md.count("](data:image/png;base64,") == INLINE_TOTAL_CHARS // (4 * ((size + 2) // 3)) == 1
    assert md.count("; set MNAFT_STORE_HTTP to view it here)") == 3
    assert len(md) < INLINE_TOTAL_CHARS + 10_000
    assert "plot_3.png` (0.4 MiB; set MNAFT_STORE_HTTP" in md


@pytest.mark.usefixtures("prefect_harness")
def test_progress_artifact_follows_the_loop_and_ends_at_100() -> None:
    seen = []

    @flow
    def long_stage() -> None:
        with stage_progress("progress-test", KEY, "a long stage", every_s=0.0) as report:
            report(1, 4)
            seen.append(_artifact("progress-test-progress").data)  # type: ignore[attr-defined]
            report(3, 4)
            seen.append(_artifact("progress-test-progress").data)  # type: ignore[attr-defined]
        seen.append(_artifact("progress-test-progress").data)  # type: ignore[attr-defined]

    long_stage()
    assert seen == [25.0, 75.0, 100.0]
    assert _artifact("progress-test-progress").type == "progress"
