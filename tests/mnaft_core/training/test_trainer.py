"""The trainer: exact resume, NaN stop, empty data, every method on a tiny model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mnaft_core.selection.mask import model_fingerprint
from mnaft_core.training.checkpoint import latest_checkpoint
from mnaft_core.training.config import FinetuneConfig
from mnaft_core.training.methods import prepare, trainable_state
from mnaft_core.training.trainer import METRICS_LOG, TrainingError, last_logged_step, plan_epoch, train
from tests.mnaft_core.models.test_adapters import CASES
from tests.mnaft_core.training.test_neuron_delta import _mask

DIRS = ["en-de"] * 10 + ["zh-Hans-en"] * 6
TOKENS = torch.randint(0, 290, (len(DIRS), 8), generator=torch.Generator().manual_seed(0))


def collate(direction: str, ids: Sequence[int]) -> tuple[tuple[str, ...], dict[str, torch.Tensor]]:
    x = TOKENS[list(ids)]
    labels = x.clone()
    labels[:, :3] = -100  # loss on "response" tokens only
    src, _, tgt = direction.partition("-") if direction.count("-") == 1 else ("zh-Hans", "", "en")
    return (src, tgt), {"input_ids": x, "labels": labels}


def _run(
    tmp: Path, method: str = "mnaft", stop_after: int | None = None, narrow: bool = False, **kw: object
) -> tuple[dict, object]:
    torch.manual_seed(0)
    model = CASES["qwen2-vl"][0]()
    mask = _mask(model) if method == "mnaft" else None
    if mask is not None and narrow:  # another selection: no agnostic neurons
        mask = replace(mask, sites={k: replace(s, agnostic=s.agnostic[:0]) for k, s in mask.sites.items()})
    cfg = FinetuneConfig(method=method, steps=6, batch_size=4, checkpoint_every=3, warmup_steps=2, lr=1e-2,
                         weight_decay=0.1, **kw)  # type: ignore[arg-type]  # fmt: skip
    t = prepare(model, cfg, mask, model_fingerprint(model) if mask else None)
    res = train(t, DIRS, collate, cfg, tmp, stop_after=stop_after, progress=False,
                on_progress=lambda done, total: PROGRESS.append((done, total)))  # fmt: skip
    return trainable_state(t), res


PROGRESS: list[tuple[int, int]] = []


def test_plan_is_pure_and_grouped() -> None:
    a = plan_epoch(DIRS, 4, seed=1, epoch=0)
    assert a == plan_epoch(DIRS, 4, seed=1, epoch=0) and a != plan_epoch(DIRS, 4, seed=1, epoch=1)
    assert all(len({DIRS[i] for i in b.indices}) == 1 for b in a)
    assert sorted(i for b in a for i in b.indices) == list(range(len(DIRS)))


def test_resume_gives_the_same_weights(tmp_path: Path) -> None:
    straight, _ = _run(tmp_path / "a", grad_accum=2)
    _, first = _run(tmp_path / "b", stop_after=3, grad_accum=2)
    assert first.steps == 3 and latest_checkpoint(tmp_path / "b") is not None  # type: ignore[attr-defined]
    PROGRESS.clear()
    resumed, second = _run(tmp_path / "b", grad_accum=2)
    assert PROGRESS == [(4, 6), (5, 6), (6, 6)]  # a resumed run reports from where it stands
    assert second.resumed_from == 3 and second.steps == 6  # type: ignore[attr-defined]
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [int(ln.split('"step": ')[1].split(",")[0]) for ln in lines] == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_a_checkpoint_of_another_mask(tmp_path: Path) -> None:
    """Same config, other neurons (a mask whose key did not change with its content): a clear error
    naming the folder, never a resume into the wrong parameters."""
    _run(tmp_path, stop_after=3)
    with pytest.raises(TrainingError, match="other trainable parameters"):
        _run(tmp_path, narrow=True)


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CASES["qwen2-vl"][0]()
    cfg = FinetuneConfig(method="full", steps=8, batch_size=4, checkpoint_every=2, warmup_steps=0)
    t = prepare(model, cfg, None, None)
    calls = {"n": 0}

    def poisoned(direction: str, ids: Sequence[int]) -> tuple[tuple[str, ...], dict[str, torch.Tensor]]:
        calls["n"] += 1
        langs, inputs = collate(direction, ids)
        if calls["n"] == 5:
            with torch.no_grad():
                model.get_input_embeddings().weight.fill_(float("nan"))
        return langs, inputs

    with pytest.raises(
        TrainingError, match=r"loss is nan at step 4: stopped. Last good checkpoint: .*ckpt-00000004"
    ):
        train(t, DIRS, poisoned, cfg, tmp_path, progress=False)
    assert latest_checkpoint(tmp_path).name == "ckpt-00000004"  # type: ignore[union-attr]


def test_out_of_memory_names_the_knobs_and_keeps_the_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CASES["qwen2-vl"][0]()
    cfg = FinetuneConfig(method="lora", steps=8, batch_size=4, checkpoint_every=2, warmup_steps=0)
    t = prepare(model, cfg, None, None)
    calls = {"n": 0}

    def too_big(direction: str, ids: Sequence[int]) -> tuple[tuple[str, ...], dict[str, torch.Tensor]]:
        calls["n"] += 1
        if calls["n"] == 4:  # what a CUDA allocation raises when the card is full
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return collate(direction, ids)

    oom = r"CUDA out of memory at step 3 \(batch_size=4, grad_accum=1\)"
    with pytest.raises(TrainingError, match=oom) as e:
        train(t, DIRS, too_big, cfg, tmp_path, progress=False)
    for knob in ("batch_size", "grad_accum", "gradient_checkpointing", "bf16"):
        assert knob in str(e.value)
    assert str(latest_checkpoint(tmp_path)) in str(e.value)
    assert latest_checkpoint(tmp_path).name == "ckpt-00000002"  # type: ignore[union-attr]
    assert isinstance(e.value.__cause__, torch.cuda.OutOfMemoryError)


def test_empty_dataset_and_wrong_mask_use(tmp_path: Path) -> None:
    model = CASES["qwen2-vl"][0]()
    with pytest.raises(TrainingError, match="training split is empty"):
        train(
            prepare(model, FinetuneConfig(method="full"), None, None), [], collate, FinetuneConfig(), tmp_path
        )
    with pytest.raises(ValueError, match="mnaft needs a neuron mask"):
        prepare(model, FinetuneConfig(method="mnaft"), None, None)
    with pytest.raises(ValueError, match="full trains without a mask"):
        prepare(model, FinetuneConfig(method="full"), _mask(model), None)


@pytest.mark.parametrize("method", ["mnaft", "full", "lora"])
def test_each_method_trains_and_merges(tmp_path: Path, method: str) -> None:
    torch.manual_seed(0)
    model = CASES["qwen2-vl"][0]().eval()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    mask = _mask(model) if method == "mnaft" else None
    cfg = FinetuneConfig(method=method, steps=6, batch_size=4, checkpoint_every=3, warmup_steps=2, lr=1e-2)  # type: ignore[arg-type]
    t = prepare(model, cfg, mask, model_fingerprint(model) if mask else None)
    res = train(t, DIRS, collate, cfg, tmp_path, progress=False)
    assert res.steps == 6 and np.isfinite(res.final_loss) and res.optimizer_state_bytes > 0
    x = TOKENS[:2]
    t.activate(None)  # every language's neurons, as the merged checkpoint has them
    with torch.no_grad():
        trained = t.module(input_ids=x).logits  # type: ignore[operator]
        merged = t.merged()
        assert type(merged) is type(model)  # a plain checkpoint: no peft or delta wrapper left
        after = dict(merged.named_parameters())
        np.testing.assert_allclose(merged(input_ids=x).logits.numpy(), trained.numpy(), rtol=1e-4, atol=1e-5)
    assert after.keys() == before.keys()
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed, "training changed no weight of the merged model"
    if mask is not None:  # mnaft: only the masked slices of the MLPs moved
        dense = mask.dense(model)
        assert changed <= dense.keys()
        for name in changed:
            assert torch.equal(before[name][~dense[name]], after[name].detach()[~dense[name]]), name


def test_optimizer_state_scales_with_method(tmp_path: Path) -> None:
    _, mn = _run(tmp_path / "m", "mnaft")
    _, full = _run(tmp_path / "f", "full")
    assert mn.optimizer_state_bytes < 0.5 * full.optimizer_state_bytes  # type: ignore[attr-defined]
    assert mn.trainable_params * 8 >= mn.optimizer_state_bytes  # type: ignore[attr-defined]  # exp_avg + exp_avg_sq, fp32


def test_last_logged_step_reads_a_log_being_written(tmp_path: Path) -> None:
    assert last_logged_step(tmp_path) == 0  # no log yet
    log = tmp_path / METRICS_LOG
    log.write_text("".join(json.dumps({"step": i, "loss": 1.0}) + "\n" for i in range(1, 5000)))
    assert last_logged_step(tmp_path) == 4999  # a long log: only its tail is read
    with log.open("a") as f:
        f.write('{"step": 5000, "lo')  # rank 0 is half-way through a line
    assert last_logged_step(tmp_path) == 4999
