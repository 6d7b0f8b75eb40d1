"""The scores evaluation measures on one model, in the form every metric reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# Columns of the per-pair records: one row per evaluated (image, caption) pair.
RECORD_COLUMNS = ["set", "gallery", "image_id", "caption_index", "similarity", "matching", "loss", "auc_chunk"]


@dataclass
class ModelScores:
    """One model's evaluation scores.

    records: the per-pair table (RECORD_COLUMNS); `set` is forget, retain or test.
    rankings: per set, per gallery, the rank (0 = first) of the best true match for every query,
        as {"image_to_text": array, "text_to_image": array}.
    embeddings: unimodal embeddings of the test images and captions, {"image": array, "text": array}.
    labels: class labels of the images in embeddings["image"], one integer array per label name in
        the same row order. It is empty when the dataset has no labels.
    """

    records: pd.DataFrame
    rankings: dict[str, list[dict[str, np.ndarray]]]
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    gallery_sizes: dict[str, int] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
