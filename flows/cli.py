"""The `mnaft` command line: thin on purpose; every command calls a flow or the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mnaft_core.config import DEFAULT_STORE, ConfigError, PipelineConfig, load_config
from storage import ArtifactStore, StoreError, plan_gc, run_gc
from storage.inspect import summarize

app = typer.Typer(
    help="MNAFT: modality neuron-aware fine-tuning of multimodal LLMs for image translation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
artifacts_app = typer.Typer(help="Inspect, verify and clean the artifact store.", no_args_is_help=True)
app.add_typer(artifacts_app, name="artifacts")
console = Console()
err_console = Console(stderr=True)

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store", envvar="MNAFT_STORE", help="artifact store URL (default: the config's, or ./mnaft-store)"
    ),
]
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="pipeline config YAML")]


def _fail(msg: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _store(url: str | None) -> ArtifactStore:
    return ArtifactStore(url or DEFAULT_STORE)


def _config(path: Path, store: str | None) -> PipelineConfig:
    try:
        cfg = load_config(path)
    except ConfigError as err:
        raise _fail(str(err), 2) from err
    return cfg.model_copy(update={"store": store}) if store else cfg


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


@artifacts_app.command("list")
def artifacts_list(
    store: StoreOpt = None,
    stage: Annotated[str | None, typer.Option("--stage", help="only this stage")] = None,
) -> None:
    """List complete artifacts, oldest first."""
    try:
        manifests = _store(store).manifests(stage)
    except StoreError as err:
        raise _fail(str(err)) from err
    table = Table("stage", "created", "files", "size", "inputs")
    table.add_column("key", no_wrap=True, min_width=20)
    for m in manifests:
        inputs = ", ".join(f"{k}={v[:10]}" for k, v in m.inputs.items())
        table.add_row(m.stage, m.created[:19], str(len(m.files)), _human(m.total_bytes), inputs, m.key)
    console.print(table)
    if not manifests:
        console.print("(no artifacts)")


@artifacts_app.command("show")
def artifacts_show(
    key: Annotated[str, typer.Argument(help="artifact key or unique prefix (6+ hex chars)")],
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest as JSON only")] = False,
) -> None:
    """Show an artifact's manifest and a summary of its contents."""
    try:
        art = _store(store).resolve(key)
        summary = summarize(art)
    except StoreError as err:
        raise _fail(str(err)) from err
    if as_json:
        print(json.dumps({"manifest": art.manifest.model_dump(mode="json"), "contents": summary}, indent=2))
        return
    m = art.manifest
    console.print(
        f"[bold]{m.stage}/{m.key}[/]  created {m.created}  status {m.status}  code {m.code_version}"
    )
    for name, k in m.inputs.items():
        console.print(f"  input {name}: {k}")
    if m.metrics:
        console.print("metrics: " + json.dumps(m.metrics, ensure_ascii=False)[:2000], highlight=False)
    console.print("params: " + json.dumps(m.params, ensure_ascii=False)[:2000], highlight=False)
    files = Table("file", "size", "sha256")
    for f in m.files:
        files.add_row(f.path, _human(f.size), f.sha256[:16])
    console.print(files)
    if summary:
        t = Table("path", "kind", "summary")
        for row in summary:
            rest = {k: v for k, v in row.items() if k not in ("path", "kind")}
            t.add_row(row["path"], row["kind"], ", ".join(f"{k}={v}" for k, v in rest.items()))
        console.print(t)


@artifacts_app.command("verify")
def artifacts_verify(
    key: Annotated[str, typer.Argument(help="artifact key or unique prefix")],
    store: StoreOpt = None,
) -> None:
    """Check every file of an artifact against its manifest's sizes and sha256."""
    st = _store(store)
    try:
        art = st.resolve(key)
        st.verify(art.stage, art.key)
    except StoreError as err:
        raise _fail(str(err)) from err
    console.print(f"ok: {art.stage}/{art.key}: {len(art.manifest.files)} files verified", soft_wrap=True)


@artifacts_app.command("gc")
def artifacts_gc(
    store: StoreOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="delete for real (default: dry run)")] = False,
    keep: Annotated[list[str] | None, typer.Option("--keep", help="also keep this key (repeatable)")] = None,
    keep_latest: Annotated[int, typer.Option(min=0, help="newest artifacts kept per stage")] = 1,
    debris_age: Annotated[
        float, typer.Option(min=0, help="only remove interrupted writes older than this (s)")
    ] = 3600,
) -> None:
    """Delete artifacts no ref, --keep key or newest-per-stage depends on, and debris of killed writes."""
    st = _store(store)
    try:
        plan = plan_gc(st, keep_keys=keep or [], keep_latest=keep_latest, debris_age_s=debris_age)
    except StoreError as err:
        raise _fail(str(err)) from err
    for m in plan.delete:
        console.print(
            f"{'delete' if yes else 'would delete'} {m.stage}/{m.key} ({_human(m.total_bytes)})",
            soft_wrap=True,
        )
    for d in plan.debris:
        console.print(f"{'remove' if yes else 'would remove'} interrupted write {d}", soft_wrap=True)
    for k in plan.missing_inputs:
        err_console.print(f"warning: a kept artifact depends on {k}, which is not in the store")
    freed = _human(plan.bytes_freed)
    console.print(f"keep {len(plan.keep)}, delete {len(plan.delete)} ({freed}), debris {len(plan.debris)}")
    if yes:
        run_gc(st, plan)
    elif plan.delete or plan.debris:
        console.print("dry run: pass --yes to delete")


@app.command("data")
def data(config: ConfigOpt = Path("configs/demo.yaml"), store: StoreOpt = None) -> None:
    """Render or load the image-translation dataset (the data stage) and print its key."""
    cfg = _config(config, store)
    from flows.stages import data_flow

    key = data_flow(cfg.data, cfg.store)
    console.print(f"data: {key}  (mnaft artifacts show {key} --store {cfg.store})", soft_wrap=True)


@app.command("run")
def run(config: ConfigOpt = Path("configs/demo.yaml"), store: StoreOpt = None) -> None:
    """Run the whole pipeline as the Prefect `mnaft` flow; cached stages are not recomputed."""
    cfg = _config(config, store)
    from flows.pipeline import mnaft_flow

    keys = mnaft_flow(cfg)
    table = Table("stage", "artifact key", title=f"{cfg.name}: store {cfg.store}")
    for stage, key in keys.items():
        table.add_row(stage, key)
    console.print(table)


@app.command("config")
def show_config(config: ConfigOpt = Path("configs/demo.yaml")) -> None:
    """Validate a config file and print it with every default filled in."""
    cfg = _config(config, None)
    print(json.dumps(cfg.model_dump(mode="json"), indent=2, ensure_ascii=False))
