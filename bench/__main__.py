"""`make bench`: every benchmark with its CPU defaults. GPU runs are invoked directly (see BENCHMARKS.md)."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    ["bench.train_step", "--size", "small", "--steps", "20"],
    ["bench.profile_overhead"],
    ["bench.profile_overhead", "--taylor"],
    ["bench.generation"],
    ["bench.data_import", "--sizes", "10000,100000"],
]

if __name__ == "__main__":
    for module, *args in BENCHMARKS:
        print(f"$ python -m {module} {' '.join(args)}", flush=True)
        subprocess.run([sys.executable, "-m", module, *args], check=True)
