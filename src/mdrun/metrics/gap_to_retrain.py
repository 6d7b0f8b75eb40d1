"""Gap to Retrain: how far a model's metrics and D_f scores are from those of the model retrained on D_r.

Retraining from the start on D_r alone is exact unlearning, so modern unlearning evaluation scores a
method by its closeness to Retrain rather than by extreme forgetting: a model that forgets more than
Retrain does is itself recognisable. These functions compare two models, so they take both models'
results and are called by the pipeline after Retrain is evaluated, outside the per-model metric registry.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from mdrun.errors import MdrunError

# Keys that describe the evaluation setting, not the model: equal for both models by construction.
SETTING_SUFFIXES = ("/gallery_size",)
# Keys this module writes, never compared again.
OWN_PREFIXES = ("gap/", "ks/")
KS_SCORE = "matching"


def is_compared(key: str) -> bool:
    return not key.startswith(OWN_PREFIXES) and not key.endswith(SETTING_SUFFIXES)


def metric_gaps(metrics: dict[str, float], retrain_metrics: dict[str, float]) -> dict[str, float]:
    """|method - Retrain| for every metric both models report, as `gap/<metric>`, and their unweighted mean as `gap/mean`.

    Lower is better. The mean weighs every key alike, so a family with more keys (recall has seven
    per set) counts for more than one with a single key. Keys that only one model reports are skipped.
    """
    gaps = {
        f"gap/{key}": abs(float(value) - float(retrain_metrics[key]))
        for key, value in metrics.items()
        if key in retrain_metrics and is_compared(key)
    }
    values = [value for value in gaps.values() if np.isfinite(value)]
    gaps["gap/mean"] = float(np.mean(values)) if values else float("nan")
    return gaps


def forget_score_ks(records: pd.DataFrame, retrain_records: pd.DataFrame, column: str = KS_SCORE) -> dict[str, float]:
    """Two-sample Kolmogorov-Smirnov test of the D_f scores against Retrain's D_f scores.

    `ks/statistic` is the largest gap between the two empirical distribution functions (x100, lower is
    closer to Retrain). `ks/pvalue` is the test's p-value, a probability from 0 to 1 and not scaled: a
    small value means the two distributions differ.
    """
    forget = records.loc[records["set"] == "forget", column].to_numpy(dtype=float)
    retrain_forget = retrain_records.loc[retrain_records["set"] == "forget", column].to_numpy(dtype=float)
    if len(forget) == 0 or len(retrain_forget) == 0:
        raise MdrunError(
            f"the KS test needs D_f records from both models, found {len(forget)} and {len(retrain_forget)}"
        )
    result = ks_2samp(forget, retrain_forget)
    return {"ks/statistic": float(result.statistic * 100.0), "ks/pvalue": float(result.pvalue)}


def compare_to_retrain(
    metrics: dict[str, float], retrain_metrics: dict[str, float], records: pd.DataFrame, retrain_records: pd.DataFrame
) -> dict[str, float]:
    """Gap to Retrain of every metric and the KS test of the D_f matching scores, in one dict."""
    return metric_gaps(metrics, retrain_metrics) | forget_score_ks(records, retrain_records)
