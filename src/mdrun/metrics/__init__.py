"""Metrics, one function each, computed from a model's scores (per-pair records and gallery rankings)."""

from mdrun.metrics.registry import METRICS
from mdrun.registry import import_submodules

import_submodules(__name__, __path__)


def compute_metrics(names: list[str], scores, reference=None) -> dict[str, float]:
    """Run the named metrics on one model's scores; `reference` is the original model's scores."""
    results: dict[str, float] = {}
    for name in names:
        results.update(METRICS.get(name)(scores, reference))
    return results


__all__ = ["METRICS", "compute_metrics"]
