"""What `mnaft bootstrap` builds: sizes, geometry and the training schedule of the two organisms.

The defaults are the committed organism (configs/organism.yaml repeats them next to its data section);
they were chosen so that reading is learnable in the CPU budget (see docs/organism.md).
"""

from __future__ import annotations

from pydantic import Field

from mnaft_core._base import StrictModel
from mnaft_core.data.config import DataConfig


class VisionSpec(StrictModel):
    """Qwen2-VL vision tower and the processor's pixel geometry."""

    depth: int = Field(4, ge=1, le=64, description="vision transformer blocks")
    embed_dim: int = Field(128, ge=16, le=4096, description="vision width")
    num_heads: int = Field(4, ge=1, le=64, description="vision attention heads")
    mlp_ratio: int = Field(4, ge=1, le=16, description="vision MLP width / embed_dim")
    patch_size: int = Field(8, ge=2, le=64, description="pixels per patch side")
    merge_size: int = Field(2, ge=1, le=4, description="patches merged per side into one LM token")


class TextSpec(StrictModel):
    """Qwen2 language model."""

    hidden_size: int = Field(256, ge=16, le=8192, description="LM width")
    intermediate_size: int = Field(640, ge=16, le=32768, description="LM MLP width")
    num_hidden_layers: int = Field(4, ge=1, le=128, description="LM blocks")
    num_attention_heads: int = Field(4, ge=1, le=128, description="LM attention heads")
    num_key_value_heads: int = Field(2, ge=1, le=128, description="LM key/value heads")
    vocab_size: int = Field(512, ge=300, le=200_000, description="byte-level BPE vocabulary")


class StageSpec(StrictModel):
    """One training stage: AdamW with linear warm-up and cosine decay."""

    steps: int = Field(ge=1, le=1_000_000, description="optimizer steps")
    batch_size: int = Field(32, ge=1, le=4096, description="examples per step")
    lr: float = Field(3e-3, gt=0.0, le=1.0, description="peak learning rate")
    warmup: int = Field(100, ge=0, le=100_000, description="linear warm-up steps")
    weight_decay: float = Field(0.01, ge=0.0, le=1.0, description="AdamW weight decay")


class MtSpec(StrictModel):
    """The NLLB-architecture (M2M100) text translator of the cascade."""

    d_model: int = Field(192, ge=16, le=4096, description="width")
    ffn_dim: int = Field(768, ge=16, le=16384, description="feed-forward width")
    layers: int = Field(3, ge=1, le=48, description="encoder and decoder layers (each)")
    attention_heads: int = Field(4, ge=1, le=64, description="attention heads")
    vocab_size: int = Field(4000, ge=300, le=256_000, description="shared vocabulary incl. language codes")
    train: StageSpec = Field(
        default_factory=lambda: StageSpec(steps=800, batch_size=64, lr=2e-3, warmup=100),
        description="training schedule",
    )


class OrganismTargets(StrictModel):
    """Issue 18's targets for an organism with a real modality gap, checked on the held-out test split."""

    reading_cer_max: float = Field(0.08, ge=0.0, le=10.0, description="reading CER, in every language")
    text_chrf_min: float = Field(60.0, ge=0.0, le=100.0, description="MLLM text chrF++, every direction")
    gap_chrf_min: float = Field(
        20.0, ge=0.0, le=100.0, description="text chrF++ minus zero-shot image chrF++, every direction"
    )
    mt_within_chrf: float = Field(
        5.0, ge=0.0, le=100.0, description="MT organism's text chrF++ at most this far from the MLLM's"
    )


class OrganismConfig(StrictModel):
    """Both organisms: the MLLM (reading + text translation, never image translation) and the MT model."""

    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of initialisation, sampling and rendering")
    threads: int = Field(0, ge=0, le=256, description="torch CPU threads (0 = torch's default)")
    device: str = Field(
        "cpu",
        min_length=1,
        description="where both organisms train and are measured: cpu, cuda, cuda:1 or auto (a GPU builds "
        "in minutes what takes hours on 2 cores; the weights then differ numerically from a CPU build)",
    )
    vision: VisionSpec = Field(default_factory=VisionSpec, description="vision tower")
    text: TextSpec = Field(default_factory=TextSpec, description="language model")
    reading_ctc: StageSpec = Field(
        default_factory=lambda: StageSpec(steps=1500, batch_size=32, lr=2e-3, warmup=200),
        description="stage 1: the vision tower learns to read (CTC over patch columns)",
    )
    mllm: StageSpec = Field(
        default_factory=lambda: StageSpec(steps=2600, batch_size=32, lr=2e-3, warmup=100),
        description="stage 2: the whole MLLM on reading and text translation",
    )
    vision_lr_scale: float = Field(
        0.3, gt=0.0, le=10.0, description="stage-2 learning rate of the pretrained vision tower, relative"
    )
    reading_share: float = Field(
        0.75, gt=0.0, lt=1.0, description="share of stage-2 examples that are reading (the rest: text MT)"
    )
    attention_guide: float = Field(
        1.0,
        ge=0.0,
        le=100.0,
        description="stage-2 weight of the guided-attention loss (one head per LM layer is told which image "
        "columns show the token it predicts); 0 = next-token loss only",
    )
    merger_guide: float = Field(
        1.0,
        ge=0.0,
        le=100.0,
        description="stage-2 weight of scoring each merged image token, through the LM's output embeddings, "
        "against the characters under its column; 0 = off",
    )
    text_warmup: StageSpec | None = Field(
        None,
        description="optional stage between 1 and 2: text translation only (no images, so cheap steps), "
        "for the LM to learn its translations before it learns to read",
    )
    eval_text_share: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share of the text-translation examples (MLLM and MT organism) drawn from the "
        "validation and test pairs, as text only: a pretrained LLM knows its domain's text, so image "
        "translation then measures transfer from text to image; their images are never trained. "
        "0 = train pairs only",
    )
    mt: MtSpec = Field(default_factory=MtSpec, description="the cascade's NLLB-architecture translator")
    targets: OrganismTargets = Field(
        default_factory=lambda: OrganismTargets(),
        description="what the held-out measurements should reach; the manifest says which were met",
    )
    eval_per_direction: int = Field(
        64, ge=1, le=100_000, description="held-out test examples per direction for the manifest metrics"
    )
    max_new_tokens: int = Field(32, ge=1, le=1024, description="generation length cap")


class BootstrapConfig(StrictModel):
    """configs/organism.yaml: the data the organisms learn from and how they are built."""

    name: str = Field(
        "organism",
        pattern=r"^organism(-[a-z0-9]+)?$",
        description="asset folders it installs as: assets/<name> and assets/nllb-<name> "
        "(embedded:<name> in configs)",
    )
    data: DataConfig = Field(description="the data stage; must split like the demo's so test stays unseen")
    organism: OrganismConfig = Field(default_factory=OrganismConfig, description="the organisms")
