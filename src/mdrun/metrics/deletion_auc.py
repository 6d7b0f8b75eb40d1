"""The deletion AUC of MultiDelete (Cheng and Amiri, ECCV 2024): how well a score separates D_f from D_r."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from mdrun.metrics.registry import METRICS
from mdrun.metrics.scores import ModelScores

SCORE_COLUMNS = {"similarity": "contrastive similarity (headline)", "matching": "matching-head probability"}


def deletion_auc_value(forget_scores: np.ndarray, retain_chunks: list[np.ndarray]) -> float:
    """ROC AUC (x100) with D_f labelled 0 and D_r labelled 1, averaged over disjoint D_r chunks.

    Above 50 means retained pairs score higher than deleted ones: the deletion shows. Higher is better,
    though a value far above Retrain's is itself a trace of the deletion.
    """
    forget_scores = np.asarray(forget_scores, dtype=float)
    aucs = []
    for chunk in retain_chunks:
        chunk = np.asarray(chunk, dtype=float)
        labels = np.concatenate([np.zeros(len(forget_scores)), np.ones(len(chunk))])
        aucs.append(roc_auc_score(labels, np.concatenate([forget_scores, chunk])))
    return float(np.mean(aucs) * 100.0)


@METRICS.register("deletion_auc")
def deletion_auc(scores: ModelScores, reference: ModelScores | None = None) -> dict[str, float]:
    """Deletion AUC for the contrastive similarity and for the matching probability; higher is better."""
    records = scores.records
    forget = records[records["set"] == "forget"]
    retain = records[records["set"] == "retain"]
    results = {}
    for column in SCORE_COLUMNS:
        chunks = [group[column].to_numpy() for _, group in retain[retain["auc_chunk"] >= 0].groupby("auc_chunk", sort=True)]
        results[f"deletion_auc/{column}"] = deletion_auc_value(forget[column].to_numpy(), chunks)
    return results
