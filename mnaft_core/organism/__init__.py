"""The embedded model organism: a Qwen2-VL-class MLLM with a modality gap, and an NLLB-architecture MT.

Its recipe (built by `mnaft bootstrap`); the rest of the library uses it only through its saved folders.
"""
