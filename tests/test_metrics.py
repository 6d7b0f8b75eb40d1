"""Tests of the metrics: hand-computed cases for each, and a recorded run recomputed from its parquet files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mdrun.errors import MdrunError
from mdrun.metrics import METRICS, compute_metrics
from mdrun.metrics.deletion_auc import deletion_auc, deletion_auc_value
from mdrun.metrics.gap_to_retrain import compare_to_retrain, forget_score_ks, metric_gaps
from mdrun.metrics.membership_inference import membership_attacks, split_by_image
from mdrun.metrics.recompute import recompute_run
from mdrun.metrics.scores import RECORD_COLUMNS, ModelScores
from mdrun.metrics.unimodal_retention import cosine_agreement, probe_accuracy, unimodal_retention
from mdrun.pipeline.evaluate import EvalSets, score_model

MIA_KEYS = ["mia/threshold_auc", "mia/threshold_forget_member_share", "mia/logistic_auc", "mia/logistic_forget_member_share"]


def make_records(sets: dict[str, np.ndarray], captions_per_image: int = 2, auc_chunks: int = 1) -> pd.DataFrame:
    """Per-pair records whose three attack features all equal the given per-pair score.

    `sets` maps a set name to one score per pair. Consecutive pairs share an image.
    """
    tables = []
    for set_name, values in sets.items():
        values = np.asarray(values, dtype=float)
        images = np.arange(len(values)) // captions_per_image
        chunk = images % auc_chunks if set_name == "retain" else np.full(len(values), -1)
        tables.append(pd.DataFrame({
            "set": set_name,
            "gallery": 0,
            "image_id": [f"{set_name}-{image}" for image in images],
            "caption_index": np.arange(len(values)),
            "similarity": values,
            "matching": values,
            "loss": -values,
            "auc_chunk": chunk,
        }))
    return pd.concat(tables, ignore_index=True)[RECORD_COLUMNS]


# -- deletion AUC --------------------------------------------------------------------------------


def test_deletion_auc_hand_example():
    # Of the (forget, retain) pairs, (0.1, 0.2), (0.1, 0.8) and (0.4, 0.8) rank retain above forget, but (0.4, 0.2) does not.
    assert deletion_auc_value(np.array([0.1, 0.4]), [np.array([0.2, 0.8])]) == pytest.approx(75.0)


def test_deletion_auc_averages_chunks():
    # The first chunk orders 3 of 4 pairs (75), the second all 4 (100).
    value = deletion_auc_value(np.array([0.1, 0.4]), [np.array([0.2, 0.8]), np.array([0.5, 0.9])])
    assert value == pytest.approx(87.5)


def test_deletion_auc_from_records():
    records = make_records({"forget": [0.1, 0.4], "retain": [0.2, 0.8]}, captions_per_image=1)
    results = deletion_auc(ModelScores(records=records, rankings={}))
    assert results["deletion_auc/similarity"] == pytest.approx(75.0)
    assert results["deletion_auc/matching"] == pytest.approx(75.0)


# -- membership inference ------------------------------------------------------------------------


def test_split_by_image_disjoint_and_deterministic():
    rng = np.random.default_rng(0)
    records = make_records({"forget": rng.random(10), "retain": rng.random(40), "test": rng.random(30)})
    fit, heldout = split_by_image(records)
    fit_again, _ = split_by_image(records)

    assert set(fit["image_id"]).isdisjoint(heldout["image_id"])
    assert fit.index.equals(fit_again.index)
    assert "forget" not in set(fit["set"]) | set(heldout["set"])
    for half in (fit, heldout):
        assert set(half["set"]) == {"retain", "test"}
    assert len(fit) + len(heldout) == 70


def test_attack_perfectly_separated():
    rng = np.random.default_rng(0)
    members = rng.uniform(0.6, 1.0, 80)
    non_members = rng.uniform(0.0, 0.4, 60)
    forget_like_members = rng.uniform(0.6, 1.0, 20)
    results = membership_attacks(make_records({"forget": forget_like_members, "retain": members, "test": non_members}))

    assert results["mia/threshold_auc"] == pytest.approx(100.0)
    assert results["mia/logistic_auc"] == pytest.approx(100.0)
    assert results["mia/threshold_forget_member_share"] == pytest.approx(100.0)
    assert results["mia/logistic_forget_member_share"] == pytest.approx(100.0)


def test_attack_forget_like_non_members():
    rng = np.random.default_rng(1)
    records = make_records({
        "forget": rng.uniform(0.0, 0.4, 20), "retain": rng.uniform(0.6, 1.0, 80), "test": rng.uniform(0.0, 0.4, 60),
    })
    results = membership_attacks(records)
    assert results["mia/threshold_forget_member_share"] == pytest.approx(0.0)
    assert results["mia/logistic_forget_member_share"] == pytest.approx(0.0)


def test_threshold_attack_finds_low_loss():
    rng = np.random.default_rng(3)
    records = make_records({"forget": rng.normal(size=40), "retain": rng.normal(size=160), "test": rng.normal(size=120)})
    # Only the loss separates, and members have the lower loss: the attack must find both the feature and the sign.
    records["loss"] = np.where(records["set"] == "test", rng.uniform(2.0, 3.0, len(records)), rng.uniform(0.0, 1.0, len(records)))
    results = membership_attacks(records)

    assert results["mia/threshold_auc"] == pytest.approx(100.0)
    assert results["mia/threshold_forget_member_share"] == pytest.approx(100.0)


def test_attack_identical_distributions_near_chance():
    rng = np.random.default_rng(2)
    records = make_records({"forget": rng.normal(size=200), "retain": rng.normal(size=800), "test": rng.normal(size=800)})
    # Independent features, so the attacks have three noise dimensions to overfit rather than one.
    records["similarity"] = rng.normal(size=len(records))
    records["loss"] = rng.normal(size=len(records))
    results = membership_attacks(records)

    assert results["mia/threshold_auc"] == pytest.approx(50.0, abs=6.0)
    assert results["mia/logistic_auc"] == pytest.approx(50.0, abs=6.0)


def test_attack_registered_and_needs_images():
    assert "membership_inference" in METRICS
    records = make_records({"forget": [0.1, 0.2], "retain": [0.5, 0.6, 0.7, 0.8], "test": [0.1, 0.2]})
    with pytest.raises(MdrunError, match="at least 2 images in the 'test' records"):
        membership_attacks(records)


# -- unimodal retention --------------------------------------------------------------------------


def test_cosine_agreement_hand_cases():
    embeddings = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert cosine_agreement(embeddings, embeddings) == pytest.approx(100.0)
    assert cosine_agreement(embeddings, -embeddings) == pytest.approx(-100.0)
    # Rows at 90 degrees (cosine 0) and at 60 degrees (cosine 0.5): the mean is 25.
    rotated = np.array([[0.0, 3.0], [np.sqrt(3.0), 1.0]])
    assert cosine_agreement(embeddings, rotated) == pytest.approx(25.0)


def test_unimodal_retention_model_with_itself(tiny_inputs, tiny_model):
    sets = EvalSets(
        galleries={"test": [np.arange(6)], "forget": [np.arange(6, 9)], "retain": [np.arange(9, 12)]},
        auc_chunks=[np.arange(9, 12)],
        gallery_size=3,
    )
    # score_model reads only the image IDs of a RetrievalSplit.
    split = SimpleNamespace(image_ids=[f"image-{index}" for index in range(tiny_inputs.num_images)])
    splits = {"train": split, "test": split}
    inputs = {"train": tiny_inputs, "test": tiny_inputs}
    scores = score_model(tiny_model, inputs, splits, sets, rerank_k=0, batch_size=8, desc="score tiny")

    np.testing.assert_array_equal(scores.labels["parity"], tiny_inputs.image_labels["parity"].numpy())
    results = unimodal_retention(scores, scores)
    assert results["unimodal/image_agreement"] == pytest.approx(100.0)
    assert results["unimodal/text_agreement"] == pytest.approx(100.0)
    assert "probe/parity" in results
    assert unimodal_retention(scores, None)["unimodal/image_agreement"] == pytest.approx(100.0)


def test_probe_accuracy_separable_labels():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(60, 8))
    labels = (embeddings[:, 0] > 0).astype(int)
    assert probe_accuracy(embeddings, labels) >= 90.0
    assert probe_accuracy(embeddings, np.zeros(60, dtype=int)) is None
    # Only one class has two or more images, so some training fold could miss the other class.
    assert probe_accuracy(embeddings[:5], np.array([0, 0, 0, 0, 1])) is None


# -- gap to Retrain ------------------------------------------------------------------------------


def test_metric_gaps_hand_example():
    method = {"deletion_auc/similarity": 70.0, "test/r_mean": 50.0, "test/gallery_size": 60.0, "mia/logistic_auc": 55.0}
    retrain = {"deletion_auc/similarity": 60.0, "test/r_mean": 54.0, "test/gallery_size": 60.0}
    gaps = metric_gaps(method, retrain)

    assert gaps == pytest.approx({"gap/deletion_auc/similarity": 10.0, "gap/test/r_mean": 4.0, "gap/mean": 7.0})


def test_ks_statistic_hand_examples():
    # ECDFs of [1, 2, 3, 4] and [3, 4, 5, 6] differ by at most 0.5 (at 2 and at 4).
    first = make_records({"forget": [1.0, 2.0, 3.0, 4.0]}, captions_per_image=1)
    second = make_records({"forget": [3.0, 4.0, 5.0, 6.0]}, captions_per_image=1)
    assert forget_score_ks(first, second)["ks/statistic"] == pytest.approx(50.0)

    # Fully separated samples of 3: D = 1, and the exact two-sided p-value is 2 / C(6, 3) = 0.1.
    low = make_records({"forget": [1.0, 2.0, 3.0]}, captions_per_image=1)
    high = make_records({"forget": [4.0, 5.0, 6.0]}, captions_per_image=1)
    result = forget_score_ks(low, high)
    assert result["ks/statistic"] == pytest.approx(100.0)
    assert result["ks/pvalue"] == pytest.approx(0.1)


def test_compare_to_retrain_combines():
    records = make_records({"forget": [1.0, 2.0, 3.0]}, captions_per_image=1)
    result = compare_to_retrain({"a": 1.0}, {"a": 3.0}, records, records)
    assert result == pytest.approx({"gap/a": 2.0, "gap/mean": 2.0, "ks/statistic": 0.0, "ks/pvalue": 1.0})


# -- a recorded run ------------------------------------------------------------------------------


def test_recompute_matches_recorded_run(tiny_run_overrides, tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "mdrun", *tiny_run_overrides], capture_output=True, text=True, env=environment, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    summary_path = next(Path(tmp_path, "outputs").glob("**/summary.json"))
    models = json.loads(summary_path.read_text())["models"]
    recomputed = recompute_run(summary_path.parent)

    assert set(recomputed) == {"original", "retrain", "unlearned"}
    for role, metrics in recomputed.items():
        for key, value in metrics.items():
            assert models[role][key] == pytest.approx(value, abs=1e-9), f"{role} {key}"
    for role in ("original", "unlearned"):
        assert "ks/statistic" in recomputed[role]
        assert "gap/mean" in models[role]
        assert "gap/deletion_auc/similarity" in models[role]
    assert not any(key.startswith(("gap/", "ks/")) for key in models["retrain"])
    for role in models:
        assert set(MIA_KEYS) <= set(models[role])
        assert "unimodal/image_agreement" in models[role]
    assert models["original"]["unimodal/image_agreement"] == pytest.approx(100.0)

    table = Path(tmp_path, "results", "table.md").read_text()
    assert "MIA D_f member share" in table
    assert "gap to Retrain (mean)" in table


def test_compute_metrics_runs_new_metrics():
    records = make_records({"forget": np.linspace(0, 1, 8), "retain": np.linspace(0, 1, 16), "test": np.linspace(0, 1, 8)})
    embeddings = {"image": np.eye(4), "text": np.eye(4)}
    scores = ModelScores(records=records, rankings={}, embeddings=embeddings, labels={"parity": np.array([0, 1, 0, 1])})
    results = compute_metrics(["deletion_auc", "membership_inference", "unimodal_retention"], scores, None)
    assert set(MIA_KEYS) <= set(results)
    assert results["unimodal/text_agreement"] == pytest.approx(100.0)

