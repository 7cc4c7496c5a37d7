"""Run benchmarks and write bench/results/<name>.json.

    .venv/bin/python bench/run.py [name ...]

Each benchmark is a module bench/<name>.py with `run() -> dict`; it measures cnnwidgets and its peer in the
same run and reports medians and their ratio. With no names, every benchmark runs.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
NOT_BENCHMARKS = {"run", "common"}

if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    RESULTS.mkdir(exist_ok=True)
    names = sys.argv[1:] or sorted(p.stem for p in HERE.glob("*.py") if p.stem not in NOT_BENCHMARKS)
    for name in names:
        result = importlib.import_module(name).run()
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(json.dumps(result, indent=2, ensure_ascii=False))
