"""The `mnaft` command line: thin on purpose; every command calls a flow or the store."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flows.console import print_table, setup_output
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
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="keep third-party progress bars and warnings")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", envvar=DEBUG_ENV, help="print the traceback of a failure")
    ] = False,
) -> None:
    """MNAFT: modality neuron-aware fine-tuning of multimodal LLMs for image translation."""
    ctx.meta["mnaft.debug"] = debug
    setup_output(verbose)


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
def data(
    config: ConfigOpt = Path("configs/demo.yaml"),
    store: StoreOpt = None,
    parts: Annotated[int, typer.Option(min=1, help="import the images in N part flow runs")] = 1,
) -> None:
    """Render or load the image-translation dataset (the data stage) and print its key."""
    cfg = _config(config, store)
    from flows.stages import data_flow

    key = data_flow(cfg.data, cfg.store, parts)
    console.print(f"data: {key}  (mnaft artifacts show {key} --store {cfg.store})", soft_wrap=True)


@app.command("run")
def run(config: ConfigOpt = Path("configs/demo.yaml"), store: StoreOpt = None) -> None:
    """Run the whole pipeline as the Prefect `mnaft` flow; cached stages are not recomputed."""
    cfg = _config(config, store)
    from flows.pipeline import mnaft_flow

    keys = mnaft_flow(cfg)
    print_table(("stage", "artifact key"), list(keys.items()), f"{cfg.name}: store {cfg.store}", console)
    _print_report(cfg.store, keys["evaluate"])


@app.command("claim")
def claim(config: ConfigOpt = Path("configs/claim.yaml"), store: StoreOpt = None) -> None:
    """Run the pre-registered claim experiment (docs/claim.md) as the Prefect `claim` flow: LR grid on
    the validation split, every seed at the chosen rates, all systems on the test split, the report.
    Cached stages are not recomputed, so a killed run resumes."""
    from mnaft_core.claim import ClaimConfig

    try:
        cfg = load_model(config, ClaimConfig)
    except ConfigError as err:
        raise _fail(str(err), 2) from err
    if store:
        cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"store": store})})
    from flows.claim import claim_flow

    keys = claim_flow(cfg)
    url = cfg.pipeline.store
    report = json.loads(_store(url).open("claim", keys["claim"]).read_bytes("claim.json"))
    rows = [(s["system"], f"{s['chrf']:.2f} ± {s['chrf_sd']:.2f}", report["chosen_lr"].get(s["system"], ""))
            for s in report["scores"]]  # fmt: skip
    print_table(("system", "chrF++", "lr"), rows, f"claim {keys['claim']}: test split", console)
    from mnaft_core.evaluation.claim_report import COMPARISON_COLUMNS, comparison_rows

    title = f"{report['baseline']} against"
    print_table(COMPARISON_COLUMNS, [tuple(r) for r in comparison_rows(report)], title, console)
    console.print(f"decision: {report['decision']['outcome']}", highlight=False)
    art = _store(url).open("claim", keys["claim"])
    console.print(f"report: {art.url('claim.md')}", soft_wrap=True)


@app.command("bootstrap")
def bootstrap(
    config: ConfigOpt = Path("configs/organism.yaml"),
    store: StoreOpt = None,
    install: Annotated[
        bool, typer.Option(help="copy the result over assets/<name> and assets/nllb-<name> (config's name)")
    ] = True,
) -> None:
    """Build the embedded model organisms (about 50 min on 2 CPU cores) and print their measurements."""
    from mnaft_core.organism.config import BootstrapConfig

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


@app.command("profile")
def profile(
    config: ConfigOpt = Path("configs/demo.yaml"),
    store: StoreOpt = None,
    data_key: Annotated[
        str | None, typer.Option(help="dataset artifact (default: the config's, built if missing)")
    ] = None,
) -> None:
    """Record per-neuron activation statistics (image and text conditions) into a Zarr artifact."""
    cfg = _config(config, store)
    from flows.stages import data_flow, profile_flow

    key = profile_flow(cfg, data_key or data_flow(cfg.data, cfg.store))
    console.print(f"profile: {key}", soft_wrap=True)


@app.command("select")
def select(
    config: ConfigOpt = Path("configs/demo.yaml"),
    store: StoreOpt = None,
    profile_key: Annotated[
        str | None, typer.Option(help="profile artifact (default: the config's model, data and profile)")
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="selector: mnaft, random, magnitude, taylor, ...")
    ] = None,
) -> None:
    """Classify neurons, rank layers and write the neuron mask (Parquet tables, safetensors, PNGs)."""
    cfg = _config(config, store)
    from flows.stages import select_flow
    from mnaft_core.selection.select import METHODS

    if method is not None and method not in METHODS:
        raise _fail(f"--method {method!r}: expected one of {', '.join(METHODS)}", 2)
    key = select_flow(cfg, method, profile_key)
    console.print(f"select: {key}", soft_wrap=True)


@app.command("finetune")
def finetune(
    config: ConfigOpt = Path("configs/demo.yaml"),
    store: StoreOpt = None,
    method: Annotated[
        str,
        typer.Option(help="a system of the config (mnaft, full, ...), or mnaft / full / lora / a selector"),
    ] = "mnaft",
    data_key: Annotated[str | None, typer.Option(help="dataset artifact (default: the config's)")] = None,
    mask_key: Annotated[
        str | None, typer.Option(help="mask artifact (default: the config's for the system's selector)")
    ] = None,
    seed: int = 0,
) -> None:
    """Fine-tune the configured model as one system; writes the merged checkpoint (+ neuron delta).

    A configured system trains exactly as in `mnaft run` (same key: the pipeline's artifact is reused).
    Its mask, unless given, is the one its selector makes from the config's profile (selected first if
    missing).
    """
    cfg = _config(config, store)
    from flows.stages import finetune_flow, select_flow
    from tasks.plan import Plan

    try:
        spec = cfg.finetune.system(method)
    except ValueError as err:
        raise _fail(f"--method: {err}", 2) from err
    if spec.mask is not None and mask_key is None and data_key is None:
        plan = Plan(cfg)
        if not _store(cfg.store).has("select", plan.mask(spec.mask)):
            select_flow(cfg, spec.mask)
    key = finetune_flow(cfg, method, seed, data_key, mask_key)
    console.print(f"finetune ({method}, seed {seed}): {key}", soft_wrap=True)


@app.command("evaluate")
def evaluate(
    checkpoint: Annotated[
        list[str],
        typer.Option("--checkpoint", help="SYSTEM=FINETUNE_KEY (repeatable; default: the config's suite)"),
    ] = [],  # noqa: B006
    config: ConfigOpt = Path("configs/demo.yaml"),
    store: StoreOpt = None,
    data_key: Annotated[str | None, typer.Option(help="dataset artifact (default: the config's)")] = None,
    parts: Annotated[
        int,
        typer.Option(min=1, help="split the models (base, cascade, each checkpoint) over N part flow runs"),
    ] = 1,
) -> None:
    """Evaluate the base model, the cascades and fine-tuned checkpoints (each labelled by the seed its
    run recorded; without --checkpoint every system and seed of the config); writes the report."""
    cfg = _config(config, store)
    from flows.stages import evaluate_flow

    checkpoints: dict[str, list[str]] = {}
    for item in checkpoint:
        system, sep, key = item.partition("=")
        if not sep or not system or not key:
            raise _fail(f"--checkpoint {item!r}: expected SYSTEM=FINETUNE_KEY", 2)
        checkpoints.setdefault(system, []).append(key)
    key = evaluate_flow(cfg, checkpoints or None, data_key, parts)
    _print_report(cfg.store, key)


def _print_report(store: str, key: str) -> None:
    art = _store(store).open("evaluate", key)
    report = json.loads(art.read_bytes("report.json"))
    rows = [
        (r["system"], r["direction"], r["seeds"], f"{r['bleu_mean']:.2f} ± {r['bleu_std']:.2f}",
         f"{r['chrf_mean']:.2f} ± {r['chrf_std']:.2f}")
        for r in report["aggregate"]
    ]  # fmt: skip
    print_table(("system", "direction", "seeds", "BLEU", "chrF++"), rows, f"evaluation {key}", console)
    console.print(f"report: {art.url('report.md')}", soft_wrap=True)


@app.command("report")
def report(
    key: Annotated[str, typer.Argument(help="evaluate artifact key or unique prefix")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown, json or csv")] = "markdown",
    table: Annotated[
        str, typer.Option(help="the table csv prints: scores, retention, cost or significance")
    ] = "scores",
    store: StoreOpt = None,
) -> None:
    """Print an evaluation's tables from its report.json (Markdown, JSON, or one table as CSV)."""
    from mnaft_core.evaluation.tables import ReportError, render_report

    try:
        art = _store(store).resolve(key, "evaluate")
        data = json.loads(art.read_bytes("report.json"))
        print(render_report(data, fmt, table, where=f"evaluate/{art.key}/report.json"))
    except (StoreError, ReportError) as err:
        raise _fail(str(err), 2) from err


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
    system: Annotated[
        str, typer.Option(help="direct (the model translates the image) or read+translate (needs --from)")
    ] = "direct",
    render: Annotated[
        Path | None,
        typer.Option(
            "--render",
            help="write IMAGE with each detected text box replaced by its translation (one IMAGE only)",
        ),
    ] = None,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="refuse larger images undecoded (width x height)")
    ] = DEFAULT_MAX_PIXELS,
) -> None:
    """Translate the text shown in images; unreadable or oversized files are reported and skipped.

    With --render OUT.png the text boxes are found by the cascade's detector (rapidocr), each box is
    translated by the model, and the translations are drawn over the boxes into OUT.png.
    """
    if render is not None and len(images) != 1:
        raise _fail(f"--render {render}: takes exactly one IMAGE, got {len(images)}", 2)
    from mnaft_core.evaluation.systems import Generation, ImageInput, MllmDirect, ReadThenTranslate
    from mnaft_core.models.config import ModelConfig
    from mnaft_core.models.loading import ModelLoadError, load_mllm
    from mnaft_core.training.finetune import MODEL_DIR

    if system not in ("direct", "read+translate"):
        raise _fail(f"--system {system!r}: expected direct or read+translate", 2)
    if system == "read+translate" and not source:
        raise _fail("--system read+translate translates what the model read: pass --from LANG", 2)

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
    gen = Generation(max_new_tokens=max_new_tokens, batch_size=batch_size)
    kind = MllmDirect if system == "direct" else ReadThenTranslate
    translator = kind(system, loaded.model, loaded.processor, gen)
    if render is not None:
        _render(images[0], render, translator, source, to, as_json, max_pixels)
        return
    good: list[tuple[Path, ImageInput]] = []
    failed = 0
    for img_path in images:
        try:
            image = open_rgb(img_path, max_pixels)
            good.append((img_path, ImageInput(image, source, to)))
        except ImageInputError as err:
            failed += 1
            err_console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
    outs = translator.translate([x for _, x in good]).hypotheses if good else []
    for (img_path, _), text in zip(good, outs, strict=True):
        if as_json:
            print(json.dumps({"image": str(img_path), "to": to, "translation": text}, ensure_ascii=False))
        else:
            print(f"{img_path}\t{text}")
    if failed:
        raise typer.Exit(1)


def _render(
    image: Path, out: Path, translator: Any, source: str, to: str, as_json: bool, max_pixels: int
) -> None:
    from mnaft_core.evaluation.ocr import OcrConfig, OcrError, make_ocr
    from mnaft_core.evaluation.overlay import translate_image
    from mnaft_core.evaluation.systems import ImageInput

    try:
        picture = open_rgb(image, max_pixels)
    except ImageInputError as err:
        raise _fail(str(err)) from err
    try:
        engine = make_ocr(OcrConfig())
    except OcrError as err:
        raise _fail(str(err)) from err

    def translate(crops: Sequence[Any], texts: Sequence[str]) -> list[str]:
        return list(translator.translate([ImageInput(c, source, to) for c in crops]).hypotheses)

    rendered, regions = translate_image(picture, engine, translate, to)
    out.parent.mkdir(parents=True, exist_ok=True)
    rendered.save(out)
    for r in regions:
        if as_json:
            print(json.dumps({"image": str(image), "box": list(r.box), "text": r.text, "to": to,
                              "translation": r.translation}, ensure_ascii=False))  # fmt: skip
        else:
            print(f"{image}\t{','.join(map(str, r.box))}\t{r.text}\t{r.translation}")
    err_console.print(f"{len(regions)} text boxes translated into {out}", highlight=False, soft_wrap=True)


if __name__ == "__main__":  # python -m flows.cli, as the console script `mnaft`
    app()
