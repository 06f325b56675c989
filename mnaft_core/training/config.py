"""Fine-tuning configuration: one trainer, several methods (mnaft, ablation masks, full, LoRA)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mnaft_core._base import StrictModel

TrainMethod = Literal["mnaft", "full", "lora"]


class LoraSettings(StrictModel):
    r: int = Field(16, ge=1, le=1024, description="LoRA rank")
    alpha: int = Field(32, ge=1, le=4096, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the LoRA input")
    target_modules: str = Field(
        r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$",
        description="regex over module names that receive LoRA adapters (peft's target_modules)",
    )


class FinetuneConfig(StrictModel):
    """How to train. The mask (for mnaft and its ablations) comes from a select artifact."""

    method: TrainMethod = Field("mnaft", description="mnaft (masked neurons), full, or lora")
    languages: Literal["batch", "all"] = Field(
        "batch",
        description="mnaft: train agnostic + the batch direction's specific neurons (batch), or every masked "
        "neuron on every batch (all)",
    )
    freeze_vision: bool = Field(False, description="full: keep the vision tower frozen")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA settings (method=lora)")
    steps: int = Field(200, ge=1, le=10_000_000, description="optimizer steps")
    batch_size: int = Field(8, ge=1, le=4096, description="samples per micro-batch (one direction each)")
    grad_accum: int = Field(1, ge=1, le=1024, description="micro-batches per optimizer step")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="AdamW decoupled weight decay")
    warmup_steps: int = Field(10, ge=0, le=1_000_000, description="linear warm-up steps")
    schedule: Literal["constant", "cosine", "linear"] = Field("cosine", description="decay after warm-up")
    max_grad_norm: float = Field(1.0, ge=0.0, le=1e6, description="gradient clipping (0 = off)")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of data order, dropout and init")
    checkpoint_every: int = Field(50, ge=1, le=10_000_000, description="steps between resumable checkpoints")
    keep_checkpoints: int = Field(2, ge=1, le=100, description="newest checkpoints kept")
    bf16: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU)")
    gradient_checkpointing: bool = Field(False, description="recompute activations to save memory")
    log_every: int = Field(1, ge=1, le=100_000, description="steps between metric log lines")
    processes: int = Field(
        1,
        ge=1,
        le=1024,
        description="data-parallel processes on this machine (torchrun --nproc_per_node; one per GPU): "
        "each takes a slice of every batch, gradients are averaged",
    )
    nodes: int = Field(
        1,
        ge=1,
        le=1024,
        description="machines (pods) in the run, each with `processes` processes: > 1 runs torchrun with "
        "a c10d rendezvous from the Kubernetes work pool template flows/k8s/finetune-multinode.json",
    )
    sharding: Literal["auto", "ddp", "fsdp"] = Field(
        "auto",
        description="with processes > 1: ddp replicates the model and reduces the trainable gradients "
        "(DistributedDataParallel); fsdp shards parameters, gradients and optimizer state (FSDP2), for "
        "a model or full fine-tune that does not fit on one device; auto = fsdp for full, else ddp",
    )
    save_dtype: Literal["base", "float32", "bfloat16", "float16"] = Field(
        "base", description="dtype of the saved merged checkpoint; base = the base checkpoint's own dtype"
    )

    @model_validator(mode="after")
    def _warmup(self) -> FinetuneConfig:
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) exceeds steps ({self.steps})")
        return self
