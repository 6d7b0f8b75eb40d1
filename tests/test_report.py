"""The result tables are rebuilt from run summaries alone."""

from __future__ import annotations

import json

import pandas as pd

from mdrun.report import write_tables


def write_summary(root, method: str, seed: int, unlearned_auc: float) -> None:
    run = {"data": "scenes", "model": "albef_small", "method": method, "seed": seed, "forget_images": 60, "gallery_size": 60}
    models = {
        "original": {"test/r_mean": 84.0, "deletion_auc/similarity": 48.0},
        "retrain": {"test/r_mean": 84.5, "deletion_auc/similarity": 83.0},
        "unlearned": {"test/r_mean": 80.0, "deletion_auc/similarity": unlearned_auc},
    }
    cost = {"original": {"seconds": 170.0}, "retrain": {"seconds": 160.0}, "unlearn": {"seconds": 9.0}}
    run_dir = root / method / f"seed{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({"run": run, "models": models, "cost": cost}))


def test_tables_from_summaries(tmp_path):
    runs = tmp_path / "runs"
    write_summary(runs, "multidelete", 42, 78.0)
    write_summary(runs, "multidelete", 87, 80.0)
    write_summary(runs, "neggrad", 42, 60.0)
    write_summary(runs, "ft", 42, 55.0)
    write_summary(runs, "retrain", 42, 83.0)

    paths = write_tables(runs, tmp_path / "results")
    table = paths.markdown.read_text()
    assert paths.runs == 5
    assert "| multidelete | 2 | 80.0 ± 0.0 |" in table
    assert "| 79.0 ± 1.4 |" in table
    assert "| retrain | 2 |" in table, "Retrain rows of the same seed count once"
    assert "| retrain (method) | 1 |" in table
    assert "best baseline neggrad 60.0, improvement +19.0 points" in table

    rows = pd.read_csv(paths.csv)
    assert len(rows) == 15
    assert set(rows["method"]) == {"original", "retrain", "multidelete", "neggrad", "ft", "retrain (method)"}


def test_unreadable_summary_is_skipped(tmp_path):
    runs = tmp_path / "runs"
    write_summary(runs, "multidelete", 42, 78.0)
    broken = runs / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text("{ not json")
    assert write_tables(runs, tmp_path / "results").runs == 1
