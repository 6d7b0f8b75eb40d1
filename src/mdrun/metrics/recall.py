"""Retrieval recall@k on D_test, D_f and a D_r sample, each measured within galleries of equal size."""

from __future__ import annotations

import numpy as np

from mdrun.metrics.registry import METRICS
from mdrun.metrics.scores import ModelScores

KS = (1, 5, 10)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of queries (x100) whose first true match ranks within the top k. Higher is better."""
    return float(np.mean(np.asarray(ranks) < k) * 100.0)


def gallery_recall(rankings: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Text (image-to-text) and image (text-to-image) recall@1/5/10 and r_mean, averaged over galleries."""
    per_gallery = []
    for ranks in rankings:
        values = {f"txt_r{k}": recall_at_k(ranks["image_to_text"], k) for k in KS}
        values |= {f"img_r{k}": recall_at_k(ranks["text_to_image"], k) for k in KS}
        per_gallery.append(values)
    result = {key: float(np.mean([values[key] for values in per_gallery])) for key in per_gallery[0]}
    result["r_mean"] = float(np.mean(list(result.values())))
    return result


@METRICS.register("recall")
def recall(scores: ModelScores, reference: ModelScores | None = None) -> dict[str, float]:
    """Recall@1/5/10 both ways and r_mean per set (test, forget, retain); higher keeps more task knowledge.

    On D_f, lower means the deleted associations are weaker; compare with Retrain, not with zero.
    """
    results = {}
    for set_name, rankings in scores.rankings.items():
        for key, value in gallery_recall(rankings).items():
            results[f"{set_name}/{key}"] = value
        results[f"{set_name}/gallery_size"] = float(scores.gallery_sizes.get(set_name, 0))
    return results
