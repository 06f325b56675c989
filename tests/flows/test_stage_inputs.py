"""Stages run alone find their inputs by the config's parameters, never by age.

One store holds two models' profiles and masks, and both the mnaft and the random mask of the model
under test, made in an order where "the newest mask" is always the wrong one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.stages import data_flow, evaluate_flow, finetune_flow, profile_flow, select_flow
from mnaft_core.config import PipelineConfig
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.tiny import save_tiny
from storage import ArtifactStore, content_key
from tasks.plan import InputMismatchError, MissingInputError, Plan, resolve_checkpoints
from tests.flows.test_pipeline import config  # noqa: F401  (the tiny pipeline's config fixture)


@pytest.fixture(scope="module")
def two_models(config: PipelineConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:  # noqa: F811
    """The store: data; model A's profile, random then mnaft mask; model B's profile and mnaft mask
    last (so the newest mask is B's, and the newest mask of A is not the one the flow asks for)."""
    other = save_tiny("qwen2-vl", tmp_path_factory.mktemp("other") / "tiny", seed=1)
    cfg_b = config.model_copy(update={"model": ModelConfig(name_or_path=str(other), device="cpu")})
    data_flow(config.data, config.store)
    keys = {"profile_a": profile_flow(config), "profile_b": profile_flow(cfg_b)}
    keys["mnaft_a"] = select_flow(config, "mnaft")
    keys["random_a"] = select_flow(config, "random")
    keys["mnaft_b"] = select_flow(cfg_b, "mnaft")
    return keys


@pytest.mark.usefixtures("prefect_harness")
def test_ui_style_finetune_trains_on_the_mnaft_mask_of_its_own_model(
    config: PipelineConfig,  # noqa: F811
    two_models: dict[str, str],
) -> None:
    st = ArtifactStore(config.store)
    assert st.manifests("select")[-1].key == two_models["mnaft_b"]  # "newest" would be model B's
    assert two_models["profile_a"] != two_models["profile_b"]
    key = finetune_flow(config)  # as the UI runs the deployment: the config, no keys
    trained = st.open("finetune", key).manifest
    assert trained.inputs["mask"] == two_models["mnaft_a"]
    assert trained.inputs["data"] == Plan(config).data()
    assert key == Plan(config).checkpoints()["mnaft"][0]  # the pipeline's own artifact for that system
    delta = json.loads(st.open("finetune", key).read_bytes("train_summary.json"))
    assert delta["method"] == "mnaft" and delta["delta_values"] > 0


@pytest.mark.usefixtures("prefect_harness")
def test_explicit_keys_still_win_and_are_checked_to_fit(
    config: PipelineConfig,  # noqa: F811
    two_models: dict[str, str],
) -> None:
    with pytest.raises(InputMismatchError, match=r"selector 'random'.*'mnaft' mask"):
        finetune_flow(config, "mnaft", mask_key=two_models["random_a"][:8])
    with pytest.raises(InputMismatchError, match="profile of another model"):
        finetune_flow(config, "mnaft", mask_key=two_models["mnaft_b"])
    with pytest.raises(InputMismatchError, match="method lora, which takes no mask"):
        finetune_flow(config, "lora", mask_key=two_models["mnaft_a"])
    # the random system, given no key, takes the random mask of model A
    key = finetune_flow(config, "random")
    assert ArtifactStore(config.store).open("finetune", key).manifest.inputs["mask"] == two_models["random_a"]


@pytest.mark.usefixtures("prefect_harness")
def test_a_missing_input_names_the_stage_to_run(config: PipelineConfig, tmp_path: Path) -> None:  # noqa: F811
    empty = config.model_copy(update={"store": str(tmp_path / "empty")})
    with pytest.raises(MissingInputError, match=r"no data artifact .*run the data stage \(`mnaft data`\)"):
        finetune_flow(empty)
    data_flow(empty.data, empty.store)
    with pytest.raises(MissingInputError, match=r"no profile artifact for model .*`mnaft profile`"):
        finetune_flow(empty)
    profile_flow(empty)
    with pytest.raises(MissingInputError, match=r"selector 'random'.*`mnaft select --method random`"):
        finetune_flow(empty, "random")
    with pytest.raises(MissingInputError, match=r"system 'mnaft' seed 0.*`mnaft finetune --method mnaft"):
        evaluate_flow(empty)


@pytest.mark.usefixtures("prefect_harness")
def test_evaluate_labels_checkpoints_by_their_recorded_seed(
    config: PipelineConfig,  # noqa: F811
    two_models: dict[str, str],
) -> None:
    seed0 = finetune_flow(config, "lora", seed=0)
    seed1 = finetune_flow(config, "lora", seed=1)
    for order in ([seed1, seed0], [seed0[:10], seed1[:10]]):
        assert resolve_checkpoints(config, {"lora": order}) == {"lora": {0: seed0, 1: seed1}}
    with pytest.raises(InputMismatchError, match="both ran with seed 0"):
        resolve_checkpoints(config, {"lora": [seed0, finetune_flow(config)]})  # mnaft's seed 0: cached
    st = ArtifactStore(config.store)
    foreign = content_key("finetune", {"model": "0" * 64}, {"seed": 2}, "v")
    with st.writer("finetune", foreign, inputs={"model": "0" * 64}, params={"seed": 2}) as w:
        (w.dir / "train_summary.json").write_text("{}")
    with pytest.raises(InputMismatchError, match="trained from another model"):
        resolve_checkpoints(config, {"lora": [foreign]})
    small = config.model_copy(
        update={"evaluate": config.evaluate.model_copy(update={"max_samples_per_direction": 2,
                                                               "own_cascade": False})}
    )  # fmt: skip
    key = evaluate_flow(small, {"lora": [seed1, seed0]})
    report = json.loads(ArtifactStore(config.store).open("evaluate", key).read_bytes("report.json"))
    lora = [r for r in report["scores"] if r["system"] == "lora"]
    assert sorted({r["seed"] for r in lora}) == [0, 1]
    manifest = ArtifactStore(config.store).open("evaluate", key).manifest
    assert manifest.inputs["finetune:lora:0"] == seed0 and manifest.inputs["finetune:lora:1"] == seed1


@pytest.mark.usefixtures("prefect_harness")
def test_the_cli_resolves_like_the_flows(
    config: PipelineConfig,  # noqa: F811
    two_models: dict[str, str],
    tmp_path: Path,
) -> None:
    import yaml
    from typer.testing import CliRunner

    from flows.cli import app

    small = config.model_copy(
        update={"evaluate": config.evaluate.model_copy(update={"max_samples_per_direction": 2,
                                                               "own_cascade": False})}
    )  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(small.model_dump(mode="json")))
    res = CliRunner().invoke(app, ["finetune", "--config", str(path), "--method", "random", "--seed", "1"])
    assert res.exit_code == 0, res.output
    key = finetune_flow(small, "random", seed=1)  # the same run: found in the store, not trained again
    assert key in res.stdout
    assert ArtifactStore(config.store).open("finetune", key).manifest.inputs["mask"] == two_models["random_a"]
    seed0 = finetune_flow(small, "random", seed=0)
    args = [
        "evaluate",
        "--config",
        str(path),
        "--checkpoint",
        f"random={key[:8]}",
        "--checkpoint",
        f"random={seed0}",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    (evaluated,) = ArtifactStore(config.store).manifests("evaluate")[-1:]
    assert evaluated.inputs["finetune:random:1"] == key and evaluated.inputs["finetune:random:0"] == seed0
