"""Recompute the pair-level metrics of a recorded run from its `pairs-<role>.parquet` files alone, without any model.

The deletion AUC, the membership-inference attacks and the KS test of the D_f scores read only the
per-pair records, so anyone holding a run folder can check the reported numbers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mdrun.errors import MdrunError
from mdrun.metrics.deletion_auc import deletion_auc
from mdrun.metrics.gap_to_retrain import forget_score_ks
from mdrun.metrics.membership_inference import membership_inference
from mdrun.metrics.scores import RECORD_COLUMNS, ModelScores


def read_pairs(path: Path) -> pd.DataFrame:
    """Read one model's per-pair records and check that every record column is present."""
    path = Path(path)
    if not path.is_file():
        raise MdrunError(f"per-pair records not found: {path}")
    records = pd.read_parquet(path)
    missing = [column for column in RECORD_COLUMNS if column not in records.columns]
    if missing:
        raise MdrunError(f"{path} lacks the record columns {missing}. Pass a pairs-<role>.parquet file written by an mdrun run.")
    return records


def pair_metrics(records: pd.DataFrame) -> dict[str, float]:
    """Compute the deletion AUC and the membership-inference attacks from one model's per-pair records."""
    scores = ModelScores(records=records, rankings={})
    return deletion_auc(scores) | membership_inference(scores)


def recompute_pair_metrics(path: Path) -> dict[str, float]:
    """Recompute the deletion AUC and the membership-inference attacks of one model from its parquet file."""
    return pair_metrics(read_pairs(path))


def recompute_run(run_dir: Path) -> dict[str, dict[str, float]]:
    """Recompute the pair-level metrics of every model in a run folder, with the KS test against Retrain's D_f scores.

    Returns {role: metrics} for each `pairs-<role>.parquet` found. The KS keys are added to every role
    except Retrain, and only when `pairs-retrain.parquet` is present.
    """
    run_dir = Path(run_dir)
    paths = {}
    for path in sorted(run_dir.glob("pairs-*.parquet")):
        role = path.name.removeprefix("pairs-").removesuffix(".parquet")
        paths[role] = path
    if not paths:
        raise MdrunError(f"no per-pair records (pairs-<role>.parquet) in {run_dir}. Pass the folder of a finished run.")

    records = {role: read_pairs(path) for role, path in paths.items()}
    results = {role: pair_metrics(role_records) for role, role_records in records.items()}
    if "retrain" in records:
        for role, role_records in records.items():
            if role != "retrain":
                results[role] |= forget_score_ks(role_records, records["retrain"])
    return results

