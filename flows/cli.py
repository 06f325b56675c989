"""The `mnaft` command line: thin on purpose; every command calls a flow or the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flows.errors import DEBUG_ENV, ErrorLines
from mnaft_core.config import DEFAULT_STORE, ConfigError, PipelineConfig, load_config, load_model
from mnaft_core.images import DEFAULT_MAX_PIXELS, ImageInputError, open_rgb
from storage import ArtifactStore, StoreError, plan_gc, run_gc
from storage.inspect import summarize

app = typer.Typer(
    help="MNAFT: modality neuron-aware fine-tuning of multimodal LLMs for image translation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=ErrorLines,  # every failure: one line naming what is at fault, non-zero exit (flows/errors.py)
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


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", envvar=DEBUG_ENV, help="print the traceback of a failure")
    ] = False,
) -> None:
    ctx.meta["mnaft.debug"] = debug


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
    console.print(_keys_table(f"{cfg.name}: store {cfg.store}", keys))
    _print_report(cfg.store, keys["evaluate"])


@app.command("bootstrap")
def bootstrap(
    config: ConfigOpt = Path("configs/organism.yaml"),
    store: StoreOpt = None,
    install: Annotated[
        bool, typer.Option(help="copy the result over assets/organism and assets/nllb-organism")
    ] = True,
) -> None:
    """Build the embedded model organisms (about 50 min on 2 CPU cores) and print their measurements."""
    from mnaft_core.models.organism.config import BootstrapConfig

    try:
        cfg = load_model(config, BootstrapConfig)
    except ConfigError as err:
        raise _fail(str(err), 2) from err
    from flows.stages import bootstrap_flow

    url = store or DEFAULT_STORE
    key = bootstrap_flow(cfg, url, install)
    manifest = json.loads(_store(url).open("organism", key).read_bytes("organism/manifest.json"))
    overall = manifest["metrics"]["overall"]
    table = Table("measure (held-out test)", "value", title=f"organism {key}")
    for name in ("reading_cer", "text_chrf", "zero_shot_image_chrf", "own_cascade_chrf", "gap_chrf",
                 "nllb_organism_text_chrf"):  # fmt: skip
        table.add_row(name, f"{overall[name]:.3f}" if name == "reading_cer" else f"{overall[name]:.2f}")
    console.print(table)


@app.command("deploy")
def deploy(config: ConfigOpt = Path("configs/demo.yaml"), store: StoreOpt = None) -> None:
    """Register a deployment per flow (pools cpu and gpu; checkpoint scan on cron; profiling on event)."""
    from flows.deploy import deploy as register
    from flows.deploy import deployment_specs

    specs = deployment_specs(_config(config, store))
    ids = register(specs)
    table = Table("deployment", "work pool", "schedule / trigger", "id", title="registered")
    for spec, dep_id in zip(specs, ids, strict=True):
        when = spec.cron or ("on " + ", ".join(sorted(spec.triggers[0].expect)) if spec.triggers else "")
        table.add_row(spec.name, spec.pool, when, dep_id)
    console.print(table)


def _prefect(*args: str) -> int:
    """Run the Prefect CLI of this environment in the foreground; its exit code."""
    import subprocess
    import sys

    return subprocess.call([sys.executable, "-m", "prefect", *args])


@app.command("server")
def server(port: int = 4200) -> None:
    """Start the Prefect server (SQLite) on 127.0.0.1; open http://127.0.0.1:PORT for the UI."""
    raise typer.Exit(_prefect("server", "start", "--host", "127.0.0.1", "--port", str(port)))


@app.command("worker")
def worker(pool: Annotated[str, typer.Option(help="work pool: cpu or gpu")] = "cpu") -> None:
    """Start a process worker on POOL (created if missing) that runs this checkout's flows."""
    raise typer.Exit(_prefect("worker", "start", "--pool", pool, "--type", "process"))


@app.command("store-server")
def store_server_cmd(
    store: StoreOpt = None,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 4280,
) -> None:
    """Serve a local store read-only over http, so the Prefect UI can show its pictures.

    Start workers with MNAFT_STORE_HTTP set to the printed URL: their image and link artifacts then
    point here. (An S3 store is served by MinIO itself; see docker-compose.yml.)
    """
    from storage.http import HTTP_ENV, store_server

    st = _store(store)
    if not st.is_local:
        raise _fail(f"{st.url} is not a local folder: serve it from its object store (MinIO) instead")
    try:
        srv = store_server(st.root, host, port)
    except OSError as err:
        raise _fail(f"cannot serve on {host}:{port}: {err}") from err
    console.print(
        f"serving {st.root} read-only at http://{host}:{port}\n  export {HTTP_ENV}=http://{host}:{port}"
    )
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


@app.command("config")
def show_config(config: ConfigOpt = Path("configs/demo.yaml")) -> None:
    """Validate a config file and print it with every default filled in; then check what can be
    checked without running (language tags, model resolvable offline, paths exist)."""
    from mnaft_core.checks import check_config

    cfg = _config(config, None)
    print(json.dumps(cfg.model_dump(mode="json"), indent=2, ensure_ascii=False))
    if problems := check_config(cfg):
        for line in problems:
            err_console.print(f"[bold red]error:[/] {config}: {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)


def _keys_table(title: str, keys: dict[str, str]) -> Table:
    table = Table("stage", "artifact key", title=title)
    for stage, key in keys.items():
        table.add_row(stage, key)
    return table


@app.command("profile")
def profile(
    config: ConfigOpt = Path("configs/demo.yaml"),
    store: StoreOpt = None,
    data_key: Annotated[
        str | None, typer.Option(help="dataset artifact (default: build it from the config)")
    ] = None,
) -> None:
    """Record per-neuron activation statistics (image and text conditions) into a Zarr artifact."""
    cfg = _config(config, store)
    from flows.stages import data_flow, profile_flow

    key = profile_flow(cfg.model, cfg.profile, data_key or data_flow(cfg.data, cfg.store), cfg.store)
    console.print(f"profile: {key}", soft_wrap=True)


@app.command("select")
def select(
    config: ConfigOpt = Path("configs/demo.yaml"),
    store: StoreOpt = None,
    profile_key: Annotated[str | None, typer.Option(help="profile artifact (default: the newest)")] = None,
    method: Annotated[
        str | None, typer.Option(help="selector: mnaft, random, magnitude, taylor, ...")
    ] = None,
) -> None:
    """Classify neurons, rank layers and write the neuron mask (Parquet tables, safetensors, PNGs)."""
    cfg = _config(config, store)
    from flows.stages import select_flow

    sel = cfg.select.model_copy(update={"method": method}) if method else cfg.select
    key = select_flow(sel, profile_key, cfg.store)
    console.print(f"select: {key}", soft_wrap=True)


@app.command("finetune")
def finetune(
    config: ConfigOpt = Path("configs/demo.yaml"),
    store: StoreOpt = None,
    method: Annotated[
        str, typer.Option(help="mnaft, full, lora, or a mask selector for mnaft (random, ...)")
    ] = "mnaft",
    data_key: Annotated[str | None, typer.Option(help="dataset artifact (default: the newest)")] = None,
    mask_key: Annotated[
        str | None, typer.Option(help="mask artifact for mnaft (default: the newest)")
    ] = None,
    seed: int = 0,
) -> None:
    """Fine-tune the configured model with one method; writes the merged checkpoint (+ neuron delta)."""
    cfg = _config(config, store)
    from flows.stages import finetune_flow, select_flow
    from mnaft_core.selection.select import METHODS

    train_method = method if method in ("mnaft", "full", "lora") else "mnaft"
    if method not in ("mnaft", "full", "lora") and method not in METHODS:
        raise _fail(f"--method {method!r}: expected mnaft, full, lora or one of {', '.join(METHODS)}", 2)
    settings = cfg.finetune.settings.model_copy(update={"method": train_method, "seed": seed})
    if method in METHODS and method != "mnaft" and mask_key is None:
        mask_key = select_flow(cfg.select.model_copy(update={"method": method}), None, cfg.store)
    key = finetune_flow(
        cfg.model, settings, data_key, mask_key, cfg.store, cfg.finetune.max_train_per_direction
    )
    console.print(f"finetune ({method}): {key}", soft_wrap=True)


@app.command("evaluate")
def evaluate(
    checkpoint: Annotated[
        list[str], typer.Option("--checkpoint", help="SYSTEM=FINETUNE_KEY (repeatable)")
    ] = [],  # noqa: B006
    config: ConfigOpt = Path("configs/demo.yaml"),
    store: StoreOpt = None,
    data_key: Annotated[str | None, typer.Option(help="dataset artifact (default: the newest)")] = None,
) -> None:
    """Evaluate the base model, the cascades and the given fine-tuned checkpoints; writes the report."""
    cfg = _config(config, store)
    from flows.stages import evaluate_flow

    checkpoints: dict[str, dict[int, str]] = {}
    for item in checkpoint:
        system, sep, key = item.partition("=")
        if not sep or not system or not key:
            raise _fail(f"--checkpoint {item!r}: expected SYSTEM=FINETUNE_KEY", 2)
        checkpoints.setdefault(system, {})[len(checkpoints.get(system, {}))] = (
            _store(cfg.store).resolve(key, "finetune").key
        )
    key = evaluate_flow(cfg.model, cfg.evaluate, checkpoints, data_key, cfg.store)
    _print_report(cfg.store, key)


def _print_report(store: str, key: str) -> None:
    art = _store(store).open("evaluate", key)
    report = json.loads(art.read_bytes("report.json"))
    table = Table("system", "direction", "seeds", "BLEU", "chrF++", title=f"evaluation {key}")
    for row in report["aggregate"]:
        bleu = f"{row['bleu_mean']:.2f} ± {row['bleu_std']:.2f}"
        chrf = f"{row['chrf_mean']:.2f} ± {row['chrf_std']:.2f}"
        table.add_row(row["system"], row["direction"], str(row["seeds"]), bleu, chrf)
    console.print(table)
    console.print(f"report: {art.url('report.md')}", soft_wrap=True)


@app.command("translate")
def translate(
    images: Annotated[list[Path], typer.Argument(help="image files")],
    to: Annotated[str, typer.Option("--to", help="target language (BCP-47: en, de, zh-Hans, ...)")],
    model: Annotated[
        str, typer.Option(help="finetune artifact key, model folder, hub id")
    ] = "embedded:organism",
    source: Annotated[str, typer.Option("--from", help="source language (default: let the model tell)")] = "",
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    batch_size: int = 8,
    max_new_tokens: int = 64,
    device: str = "auto",
    max_pixels: Annotated[
        int, typer.Option(min=1, help="refuse larger images undecoded (width x height)")
    ] = DEFAULT_MAX_PIXELS,
) -> None:
    """Translate the text shown in images; unreadable or oversized files are reported and skipped."""
    from mnaft_core.models.config import ModelConfig
    from mnaft_core.models.loading import ModelLoadError, load_mllm
    from mnaft_core.models.prompts import Example, generate
    from mnaft_core.training.finetune import MODEL_DIR

    path = model
    if not model.startswith("embedded:") and not Path(model).exists() and "/" not in model:
        try:
            path = str(_store(store).resolve(model, "finetune").local_path(MODEL_DIR))
        except StoreError as err:
            raise _fail(f"--model {model!r}: not a folder, and {err}", 2) from err
    try:
        loaded = load_mllm(ModelConfig(name_or_path=path, device=device))
    except ModelLoadError as err:
        raise _fail(str(err), 2) from err
    good: list[tuple[Path, Example]] = []
    failed = 0
    for img_path in images:
        try:
            image = open_rgb(img_path, max_pixels)
            good.append((img_path, Example("translate_image", source, to, image=image)))
        except ImageInputError as err:
            failed += 1
            err_console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
    outs = generate(loaded.model, loaded.processor, [e for _, e in good], max_new_tokens=max_new_tokens,
                    batch_size=batch_size)  # fmt: skip
    for (img_path, _), text in zip(good, outs, strict=True):
        if as_json:
            print(json.dumps({"image": str(img_path), "to": to, "translation": text}, ensure_ascii=False))
        else:
            print(f"{img_path}\t{text}")
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":  # python -m flows.cli, as the console script `mnaft`
    app()
