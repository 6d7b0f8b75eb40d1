"""Membership inference on D_f: attacks fitted on D_r (members) against held-out test pairs (non-members).

A model that forgot D_f should make its pairs look like pairs it never trained on. Membership is
treated as a binary classification of a model's outputs, as Shokri et al. ("Membership Inference
Attacks against Machine Learning Models", IEEE S&P 2017) define it, but the attack is fitted on the
evaluated model's own D_r and test pairs instead of on shadow models. Two attacks read the same
per-pair features (matching probability, contrastive similarity, task loss): a threshold on the
single best feature, and a logistic regression over all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mdrun.errors import MdrunError
from mdrun.metrics.registry import METRICS
from mdrun.metrics.scores import ModelScores

ATTACK_FEATURES = ("matching", "similarity", "loss")
# Fixed, so the fit and held-out halves are the same pairs for every model of a run.
SPLIT_SEED = 0


@dataclass
class AttackData:
    """Attack features and membership labels (1 for a D_r member, 0 for a test non-member) of one half."""

    features: np.ndarray
    labels: np.ndarray


def split_by_image(records: pd.DataFrame, seed: int = SPLIT_SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split D_r and test records into a fit half and a held-out half, keeping all pairs of an image together.

    Each set is split on its own, so both halves contain members and non-members. With an odd number
    of images in a set, the fit half gets the extra one.
    """
    rng = np.random.default_rng(seed)
    fit_parts, heldout_parts = [], []
    for set_name in ("retain", "test"):
        part = records[records["set"] == set_name]
        images = np.array(sorted(part["image_id"].unique()))
        if len(images) < 2:
            raise MdrunError(
                f"membership inference needs at least 2 images in the '{set_name}' records, found {len(images)}. "
                "Evaluate on more test images or a larger D_r sample (eval.retain_chunks)."
            )
        shuffled = rng.permutation(images)
        fit_images = set(shuffled[: (len(images) + 1) // 2].tolist())
        in_fit = part["image_id"].isin(fit_images)
        fit_parts.append(part[in_fit])
        heldout_parts.append(part[~in_fit])
    return pd.concat(fit_parts), pd.concat(heldout_parts)


def attack_data(records: pd.DataFrame, features: list[str]) -> AttackData:
    return AttackData(
        features=records[features].to_numpy(dtype=float),
        labels=(records["set"] == "retain").to_numpy().astype(int),
    )


def fit_threshold_attack(fit: AttackData) -> tuple[int, float, float]:
    """Choose the feature, sign and threshold that maximise Youden's J (TPR - FPR) on the fit half.

    Returns (feature column, sign, threshold): a pair is judged a member when sign * feature >= threshold.
    The threshold lies midway between the lowest fit score judged a member and the next lower fit score,
    so unseen pairs just outside the fit half's range are not judged by where the fit sample happened to end.
    """
    best = (-np.inf, 0, 1.0, np.inf)
    for column in range(fit.features.shape[1]):
        for sign in (1.0, -1.0):
            # Without dropping points, `thresholds` contains inf (scikit-learn 1.3 and later) and then every
            # distinct score, descending.
            fpr, tpr, thresholds = roc_curve(fit.labels, sign * fit.features[:, column], drop_intermediate=False)
            index = int(np.argmax(tpr - fpr))
            if tpr[index] - fpr[index] > best[0]:
                threshold = thresholds[index]
                if 0 < index < len(thresholds) - 1:
                    threshold = (thresholds[index] + thresholds[index + 1]) / 2.0
                best = (tpr[index] - fpr[index], column, sign, float(threshold))
    _, column, sign, threshold = best
    return column, sign, threshold


def threshold_attack(fit: AttackData, heldout: AttackData, forget_features: np.ndarray) -> dict[str, float]:
    column, sign, threshold = fit_threshold_attack(fit)
    heldout_scores = sign * heldout.features[:, column]
    forget_scores = sign * forget_features[:, column]
    return {
        "mia/threshold_auc": float(roc_auc_score(heldout.labels, heldout_scores) * 100.0),
        "mia/threshold_forget_member_share": float(np.mean(forget_scores >= threshold) * 100.0),
    }


def logistic_attack(fit: AttackData, heldout: AttackData, forget_features: np.ndarray) -> dict[str, float]:
    # Balanced class weights, because the D_r sample usually contains more pairs than the test galleries.
    # A pair is then judged a member when the member probability is at least 0.5.
    attack = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
    attack.fit(fit.features, fit.labels)
    heldout_scores = attack.predict_proba(heldout.features)[:, 1]
    return {
        "mia/logistic_auc": float(roc_auc_score(heldout.labels, heldout_scores) * 100.0),
        "mia/logistic_forget_member_share": float(np.mean(attack.predict(forget_features) == 1) * 100.0),
    }


def membership_attacks(records: pd.DataFrame, seed: int = SPLIT_SEED) -> dict[str, float]:
    """Fit both attacks on one half of the D_r and test records, score them on the other half, apply them to D_f."""
    features = [name for name in ATTACK_FEATURES if name in records.columns]
    forget = records[records["set"] == "forget"]
    if forget.empty:
        raise MdrunError("membership inference needs D_f records (set == 'forget'), but there are none")

    fit_records, heldout_records = split_by_image(records, seed)
    fit, heldout = attack_data(fit_records, features), attack_data(heldout_records, features)
    forget_features = forget[features].to_numpy(dtype=float)
    return threshold_attack(fit, heldout, forget_features) | logistic_attack(fit, heldout, forget_features)


@METRICS.register("membership_inference")
def membership_inference(scores: ModelScores, reference: ModelScores | None = None) -> dict[str, float]:
    """Membership-inference attack AUC on held-out pairs and the share of D_f judged members (x100).

    Lower member share is better forgetting, but Retrain's share is the target: a share far below
    it is itself a sign of the deletion. The AUC shows how much the attack can be trusted (50 is chance).
    """
    return membership_attacks(scores.records)
