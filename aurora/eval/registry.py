"""The benchmark registry: every module in `aurora/eval/tasks/` is a benchmark, named after its file
(`caption_metrics.py` -> `caption-metrics`). Adding a benchmark is adding a file; listing the
names imports nothing.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from aurora.errors import ConfigError

_TASKS_DIR = Path(__file__).parent / "tasks"


def names() -> list[str]:
    modules = [m.name for m in pkgutil.iter_modules([str(_TASKS_DIR)]) if not m.name.startswith("_")]
    return sorted(name.replace("_", "-") for name in modules)


def load(name: str) -> ModuleType:
    if name not in names():
        raise ConfigError(f"unknown benchmark {name!r}: choose one of {', '.join(names())}")
    return importlib.import_module(f"aurora.eval.tasks.{name.replace('-', '_')}")
