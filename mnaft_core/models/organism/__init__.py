"""The embedded model organism: a Qwen2-VL-class MLLM with a modality gap, and an NLLB-architecture MT."""
