"""Writing benchmark results: one JSON layout for every bench/ script.

``{"meta": {command, omp_num_threads, cpus, machine, date}, "rows": [...], ...}``;
bench/make_results.py reads ``meta`` for the command line and the date."""
import json
import os
import platform
import sys
import time


def run_meta():
    """How and where this benchmark ran."""
    return {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M")}


def write_results(path, rows, **extra):
    """Write ``rows`` (and any extra top-level fields) with the run's meta to ``path``."""
    with open(path, "w") as f:
        json.dump({"meta": run_meta(), "rows": rows, **extra}, f, indent=1)
    print("wrote", path)
