"""Unimodal retention: how much of the original model's unimodal knowledge survives unlearning.

MultiDelete (Cheng and Amiri, ECCV 2024) trains the unimodal embeddings g_a, g_b to stay close to
the original's on D_r (its unimodal knowledge retention loss). This metric checks that on the held-out split:
the cosine agreement of each modality's embeddings with the original model's, and linear probes of
the image embeddings for every per-image class label the dataset provides.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mdrun.errors import MdrunError
from mdrun.metrics.registry import METRICS
from mdrun.metrics.scores import ModelScores

log = logging.getLogger(__name__)

MODALITIES = ("image", "text")
PROBE_FOLDS = 5
PROBE_SEED = 0


def cosine_agreement(embeddings: np.ndarray, reference: np.ndarray) -> float:
    """Mean cosine similarity (x100) between matching rows of two embedding matrices. 100 means the same directions."""
    embeddings = np.asarray(embeddings, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if embeddings.shape[0] != reference.shape[0]:
        raise MdrunError(
            f"cannot compare embeddings of {embeddings.shape[0]} and {reference.shape[0]} rows. "
            "Evaluate both models on the same held-out split."
        )
    norms = np.linalg.norm(embeddings, axis=1) * np.linalg.norm(reference, axis=1)
    cosines = np.sum(embeddings * reference, axis=1) / np.maximum(norms, 1e-12)
    return float(np.mean(cosines) * 100.0)


def probe_accuracy(embeddings: np.ndarray, labels: np.ndarray, seed: int = PROBE_SEED) -> float | None:
    """Cross-validate a logistic-regression probe and return its mean accuracy (x100).

    The folds are stratified. There are PROBE_FOLDS of them, or fewer when the largest class has fewer
    images. Returns None when fewer than two classes have two or more images, because then a training
    fold could hold a single class.
    """
    labels = np.asarray(labels)
    counts = np.unique(labels, return_counts=True)[1]
    if np.sum(counts >= 2) < 2:
        return None
    folds = min(PROBE_FOLDS, int(counts.max()))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    with warnings.catch_warnings():
        # Small held-out splits have rare classes with fewer images than folds, so such a class
        # is missing from the test part of some folds. That is expected, not an error.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        accuracies = cross_val_score(probe, embeddings, labels, cv=cv, scoring="accuracy", error_score="raise")
    return float(np.mean(accuracies) * 100.0)


@METRICS.register("unimodal_retention")
def unimodal_retention(scores: ModelScores, reference: ModelScores | None = None) -> dict[str, float]:
    """Cosine agreement with the original model's unimodal embeddings, per modality, and probe accuracies (x100).

    Higher agreement is better: 100 means the unimodal encoders are unchanged. The original model is
    scored against itself, so its agreement is 100. Higher probe accuracy is better. Compare it with
    the original model's probe accuracy in its own row.
    """
    reference = reference if reference is not None else scores
    results = {}
    for modality in MODALITIES:
        if modality not in scores.embeddings or modality not in reference.embeddings:
            raise MdrunError(f"unimodal retention needs the held-out '{modality}' embeddings of both models")
        results[f"unimodal/{modality}_agreement"] = cosine_agreement(scores.embeddings[modality], reference.embeddings[modality])

    for name, labels in scores.labels.items():
        accuracy = probe_accuracy(scores.embeddings["image"], labels)
        if accuracy is None:
            log.info("probe '%s' skipped: fewer than two classes have two or more held-out images", name)
            continue
        results[f"probe/{name}"] = accuracy
    return results
