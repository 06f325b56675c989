"""What every stage task shares: its content key, a Prefect cache keyed by it, and publishing.

The store is the source of truth. Prefect's cache key for a stage is the artifact's content key, but
only while that artifact exists complete in the store; after `mnaft artifacts gc` removed it, the task
runs again instead of returning a reference to nothing. Prefect persists only the key (a string).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect.artifacts import (
    create_image_artifact,
    create_link_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.context import TaskRunContext

from mnaft_core._base import ProgressFn, StrictModel
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import model_identity
from storage import ArtifactStore, code_version, content_key
from storage.http import http_base, public_url
from storage.keys import import_closure

# Where a stage's code version looks: the library. The stage's task module and every library module it
# imports, directly or not, are hashed (storage.keys.import_closure), so no module can be left out.
LIBRARY = ("mnaft_core",)

INLINE_MAX_BYTES = 512 * 1024  # without an http store URL, pictures up to this size go inline
# ... and at most this many base64 characters of them per Markdown artifact: Prefect drops the event of an
# artifact over PREFECT_EVENTS_MAXIMUM_SIZE_BYTES (1.5 MB by default), so automations would never see it.
INLINE_TOTAL_CHARS = 1_000_000

# A local display of each stage's progress (the CLI's rich bar), set by the front end; None = only the
# Prefect progress artifact.
ProgressDisplay = Callable[[str, str], AbstractContextManager[ProgressFn]]
_display: ProgressDisplay | None = None


def local_display() -> bool:
    """Whether a front end shows stage progress itself (then the library's own tqdm bars stay off)."""
    return _display is not None


def set_progress_display(display: ProgressDisplay | None) -> None:
    """Show every stage's progress through ``display(stage, what)`` as well (``None``: stop)."""
    global _display
    _display = display


def stage_code(module: str) -> str:
    """Code version of the stage whose task module is ``module``: its source and its library closure."""
    return code_version(*import_closure(module, LIBRARY))


def stage_key(
    stage: str, params: StrictModel | Mapping[str, Any], inputs: Mapping[str, str], module: str
) -> str:
    """Content key of ``stage``: upstream keys + parameters + the source of the code that computes it
    (``module``: the stage's task module, whose import closure is that code)."""
    p = params.model_dump(mode="json") if isinstance(params, StrictModel) else dict(params)
    return content_key(stage, inputs, p, stage_code(module))


def model_input(model: ModelConfig) -> dict[str, str]:
    """A model as a stage input: its content identity (loading options that change nothing are left out)."""
    return {"model": model_identity(model)}


def store_cache(
    stage: str, key_of: Callable[..., str]
) -> Callable[[TaskRunContext, dict[str, Any]], str | None]:
    """A Prefect ``cache_key_fn`` that hits exactly when the store holds the stage's artifact."""

    def cache_key(_: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        key = key_of(**parameters)
        return f"{stage}-{key}" if ArtifactStore(parameters["store"]).has(stage, key) else None

    return cache_key


def parts_store(store: str, stage: str, doing: str) -> ArtifactStore:
    """The store of a stage run in parts (``doing``: "profiling", ...): its staging folder must be one
    every part can write, so a local store folder (shared between machines if they mount it); an object
    store is refused naming the stage."""
    st = ArtifactStore(store)
    if not st.is_local:
        raise ValueError(
            f"{store}: {doing} in parts needs a store folder every part can write (local or shared "
            f"mount); with an object store run the {stage} stage whole (parts: 1)"
        )
    return st


def publish(
    store: str,
    stage: str,
    key: str,
    *,
    params: Any,
    inputs: Mapping[str, str],
    module: str,
    build: Callable[[Path], Mapping[str, Any]],
    resumable: bool = False,
) -> str:
    """Run ``build(folder)`` and publish the folder as ``stage/key`` unless it already exists."""
    st = ArtifactStore(store)
    if st.has(stage, key):
        return key
    with st.build_lock(stage, key):  # one builder per key; the others wait here, then reuse its result
        if st.has(stage, key):
            return key
        with st.writer(
            stage, key, inputs=inputs, params=params, code_version=stage_code(module), resumable=resumable
        ) as w:
            w.metrics.update(build(w.dir))
    return key


def artifact_key(name: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) from any name."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", name.lower())).strip("-") or "artifact"


class InlineBudget:
    """What is left of one Markdown artifact's inline-picture allowance (``INLINE_TOTAL_CHARS``)."""

    def __init__(self, chars: int = INLINE_TOTAL_CHARS) -> None:
        self.left = chars

    def take(self, size: int) -> bool:
        """Whether a PNG of ``size`` bytes may go inline (and, if so, spend its base64 length)."""
        chars = 4 * ((size + 2) // 3)
        if size > INLINE_MAX_BYTES or chars > self.left:
            return False
        self.left -= chars
        return True


def picture_markdown(
    art: Any, path: str, size: int, url: str | None, budget: InlineBudget, name: str | None = None
) -> str:
    """One stored PNG in a Markdown artifact: from the store's http URL, inline while ``budget`` lasts,
    else named by its store path."""
    name = path if name is None else name
    if url is not None:
        return f"![{name}]({url})"
    if budget.take(size):
        return f"![{name}](data:image/png;base64,{base64.b64encode(art.read_bytes(path)).decode()})"
    return f"`{art.url(path)}` ({size / 2**20:.1f} MiB; set MNAFT_STORE_HTTP to view it here)"


def with_pictures(markdown: str, store: str, stage: str, key: str) -> str:
    """A stored Markdown report for the UI: its relative picture links (right in the store folder, dead
    in the UI) dropped, the stage's pictures appended as ``show_pictures`` gives them."""
    kept = re.sub(r"!\[[^\]]*\]\((?![a-z]+:)[^)]*\.png\)\n?", "", markdown)
    return kept.rstrip() + "\n\n" + show_pictures(store, stage, key)


def show_pictures(store: str, stage: str, key: str) -> str:
    """Image artifacts for the stage's PNGs (and a link to its folder) and the Markdown that shows them.

    With ``MNAFT_STORE_HTTP`` set (MinIO, or `mnaft store-server`) the UI loads each picture from the
    store; without it, pictures up to 512 KB are inlined in the Markdown (about 1 MB of them in all, the
    rest named by path, like larger ones).
    """
    art = ArtifactStore(store).open(stage, key)
    base, budget = http_base(), InlineBudget()
    lines = []
    for entry in art.manifest.files:
        if not entry.path.endswith(".png"):
            continue
        name = entry.path.removesuffix(".png")
        url = public_url(stage, key, entry.path, base)
        if url is not None:
            desc = f"{stage} `{key}`: {entry.path}"
            create_image_artifact(image_url=url, key=artifact_key(f"{stage}-{name}"), description=desc)
        lines.append(picture_markdown(art, entry.path, entry.size, url, budget, name))
    if base is not None:
        folder = public_url(stage, key, "", base)
        assert folder is not None
        text = f"{stage} {key} in the store"
        create_link_artifact(folder, link_text=text, key=artifact_key(f"{stage}-files"), description=key)
        lines.append(f"[all files of `{stage}/{key}`]({folder})")
    return "\n\n".join(lines)


@contextmanager
def stage_progress(stage: str, key: str, what: str, every_s: float = 2.0) -> Iterator[ProgressFn]:
    """A progress artifact for a long stage; yields the ``(done, total)`` callback the loop reports to.

    Updates at most every ``every_s`` seconds (each is an API call) and reaches 100 when the block ends.
    """
    made = create_progress_artifact(0.0, key=artifact_key(f"{stage}-progress"), description=f"{what} `{key}`")
    art_id = cast(UUID, made)  # called from sync code: the sync variant returns the id
    last = time.monotonic()
    display = _display(stage, f"{what} {key}") if _display is not None else nullcontext(None)
    with display as local:

        def report(done: int, total: int) -> None:
            nonlocal last
            if local is not None:
                local(done, total)
            if time.monotonic() - last >= every_s:
                update_progress_artifact(art_id, min(100.0, 100.0 * done / max(total, 1)))
                last = time.monotonic()

        yield report
    update_progress_artifact(art_id, 100.0)


# The Markdown artifact each stage shows in the UI (the one its downstream stages link to).
def report_artifact(stage: str, params: Mapping[str, Any]) -> str | None:
    method = params.get("method", "")
    return {
        "data": "dataset-card",
        "profile": "profile-summary",
        "select": artifact_key(f"mask-{method}"),
        "finetune": artifact_key(f"finetune-{method}-run"),
        "evaluate": "evaluation-report",
    }.get(stage)


INPUT_STAGES = {"mask": "select"}  # manifest input name -> stage, where they differ


def _artifact_page(artifact: str, key: str) -> str:
    """The UI page of the version of ``artifact`` made for ``key`` (its description names the key), or of
    the artifact's newest version when that one is not on this server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.settings import PREFECT_UI_URL

    ui = (PREFECT_UI_URL.value() or "").rstrip("/")
    try:
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact])),
                sort=ArtifactSort.CREATED_DESC,
                limit=50,
            )
    except Exception:  # no API reachable: the key's page still finds the newest version
        found = []
    exact = [a for a in found if a.description and key in a.description]
    return f"{ui}/artifacts/artifact/{exact[0].id}" if exact else f"{ui}/artifacts/key/{artifact}"


def inputs_markdown(store: str, stage: str, key: str) -> str:
    """A "Made from" section: every upstream artifact of ``stage/key`` with links to its Prefect artifact
    and (with ``MNAFT_STORE_HTTP``) its store folder, so a run can be followed back to its data
    (finetune -> mask -> profile -> data) from page to page."""
    st = ArtifactStore(store)
    inputs = st.open(stage, key).manifest.inputs
    base = http_base()
    lines = []
    for name, up_key in inputs.items():
        up_stage = INPUT_STAGES.get(name, name.split(":")[0])
        if not st.has(up_stage, up_key):
            lines.append(f"- {name}: `{up_key}`")
            continue
        links = []
        artifact = report_artifact(up_stage, st.open(up_stage, up_key).manifest.params or {})
        if artifact is not None:
            links.append(f"[{artifact}]({_artifact_page(artifact, up_key)})")
        folder = public_url(up_stage, up_key, "", base) if base else None
        if folder is not None:
            links.append(f"[files]({folder})")
        lines.append(f"- {name}: {up_stage} `{up_key}`" + (f" ({', '.join(links)})" if links else ""))
    return "## Made from\n\n" + "\n".join(lines) + "\n" if lines else ""
