"""Plain typed settings of one experiment; the entry point builds them from the Hydra config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ExperimentSettings:
    data: dict[str, Any]  # name, loader and the loader's options
    model: dict[str, Any]  # name, arch, inputs (how data becomes model inputs), params, train (the recipe)
    method: dict[str, Any]  # name and hyperparameters
    forget: dict[str, Any]  # size or ids_file
    evaluation: dict[str, Any]  # gallery_size, retain_chunks, rerank_k, batch_size, metrics
    seed: int
    run_dir: Path
    cache_dir: Path
    runs_dir: Path
    results_dir: Path
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config, saved with the results
    device: str = "cpu"
