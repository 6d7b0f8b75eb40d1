"""End-to-end runs on tiny sizes: results on disk, cached models reused, clear errors, nothing lost on failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from mdrun.config import CONFIG_DIR, settings_from_config
from mdrun.methods.base import UnlearningMethod
from mdrun.pipeline import run as pipeline_run
from mdrun.pipeline.run import Experiment

RECALL_KEYS = ["txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10", "r_mean", "gallery_size"]
METRIC_KEYS = [f"{s}/{k}" for s in ("test", "forget", "retain") for k in RECALL_KEYS] + [
    "deletion_auc/similarity", "deletion_auc/matching",
]


def run_mdrun(overrides: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mdrun", *overrides], capture_output=True, text=True, timeout=600)


def run_dir_of(root: Path, method: str = "multidelete", forget: str = "size6", seed: int = 42) -> Path:
    return root / "outputs" / "runs" / "scenes" / "albef_small" / method / f"{forget}-seed{seed}"


def test_tiny_run_writes_every_metric(tiny_run_overrides, tmp_path):
    result = run_mdrun([*tiny_run_overrides])
    assert result.returncode == 0, result.stderr[-3000:]

    run_dir = run_dir_of(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    for role in ("original", "retrain", "unlearned"):
        missing = [key for key in METRIC_KEYS if key not in summary["models"][role]]
        assert not missing, f"{role} lacks {missing}"
        assert (run_dir / f"pairs-{role}.parquet").is_file()
    for stage in ("original", "retrain", "unlearn", "evaluate_original", "evaluate_retrain", "evaluate_unlearned"):
        assert summary["status"][stage] == "done"
        assert summary["cost"][stage]["seconds"] > 0
        assert summary["cost"][stage]["peak_rss_mb"] > 0

    assert summary["config"]["method"]["name"] == "multidelete"
    assert json.loads((run_dir / "config.json").read_text())["seed"] == 42
    pairs = pd.read_parquet(run_dir / "pairs-unlearned.parquet")
    assert set(pairs["set"]) == {"test", "forget", "retain"}
    assert (pairs["set"] == "forget").sum() == summary["run"]["forget_pairs"]

    table = (tmp_path / "results" / "table.md").read_text()
    for name in ("original", "retrain", "multidelete"):
        assert f"| {name} |" in table
    assert (tmp_path / "results" / "runs.csv").is_file()


def test_second_run_reuses_cached_models(tiny_run_overrides, tmp_path):
    overrides = [*tiny_run_overrides, "seed=7"]
    first = run_mdrun(overrides)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_mdrun([*overrides, "method.params.lr=5e-4"])
    assert second.returncode == 0, second.stderr[-3000:]

    summary = json.loads((run_dir_of(tmp_path, seed=7) / "summary.json").read_text())
    assert summary["cost"]["original"]["cached"] is True
    assert summary["cost"]["retrain"]["cached"] is True
    assert summary["cost"]["evaluate_original"]["cached"] is True
    assert summary["models"]["original"]["test/r_mean"] > 0, "metrics of cached scores must still be recorded"
    assert "original: reusing cached model" in second.stdout + second.stderr


def expect_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output, output[-3000:]
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} not in {output[-2000:]}"
    return output


def test_unknown_method_lists_valid_ones(tiny_run_overrides):
    expect_clean_error(run_mdrun([*tiny_run_overrides, "method=forgetall"]), "forgetall", "multidelete")


def test_unknown_dataset_lists_valid_ones(tiny_run_overrides):
    expect_clean_error(run_mdrun([*tiny_run_overrides, "data=imagenet"]), "imagenet", "flickr30k", "scenes")


def test_unknown_model_lists_valid_ones(tiny_run_overrides):
    expect_clean_error(run_mdrun([*tiny_run_overrides, "model=giant"]), "giant", "albef_small")


def test_missing_dataset_names_path_and_fix(tiny_run_overrides, tmp_path):
    output = expect_clean_error(
        run_mdrun([f"paths.root_dir={tmp_path}", "data=flickr30k", f"paths.data_dir={tmp_path}/nowhere"]),
        f"{tmp_path}/nowhere/flickr30k", "annotations/train.json", "Flickr30K", "data=scenes",
    )
    assert "run folder" in output


def test_forget_size_larger_than_train(tiny_run_overrides):
    expect_clean_error(
        run_mdrun([*tiny_run_overrides, "forget.size=500"]),
        "forget.size=500", "40 training images",
    )


def test_ids_file_outside_training_set(tiny_run_overrides, tmp_path):
    ids = tmp_path / "delete.txt"
    ids.write_text("scenes-images/000001.jpg\nscenes-images/999999.jpg\nholiday.jpg\n")
    expect_clean_error(
        run_mdrun([*tiny_run_overrides, f"forget.ids_file={ids}"]),
        "2 of 3 IDs", "scenes-images/999999.jpg", "holiday.jpg",
    )


class FailingMethod(UnlearningMethod):
    def unlearn(self, model, data, seed):
        raise RuntimeError("simulated crash during unlearning")


def test_failed_stage_keeps_finished_results(tiny_run_overrides, tmp_path, monkeypatch):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=tiny_run_overrides)
    run_dir = tmp_path / "run"
    monkeypatch.setattr(pipeline_run, "build_method", lambda name, **params: FailingMethod())

    with pytest.raises(RuntimeError, match="simulated crash"):
        Experiment(settings_from_config(cfg, run_dir)).run()

    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["models"]) == {"original", "retrain"}
    assert summary["models"]["original"]["test/r_mean"] > 0
    assert summary["status"]["unlearn"].startswith("failed: RuntimeError: simulated crash")
    assert (run_dir / "pairs-retrain.parquet").is_file()


def test_rerun_archives_previous_run(tiny_run_overrides, tmp_path):
    assert run_mdrun(tiny_run_overrides).returncode == 0
    failed = run_mdrun([*tiny_run_overrides, "method.params.lr=1e6"])
    expect_clean_error(failed, "diverged", "lower method.params.lr")

    run_dir = run_dir_of(tmp_path)
    archived = list((run_dir / ".previous").glob("*/summary.json"))
    assert len(archived) == 1
    assert set(json.loads(archived[0].read_text())["models"]) == {"original", "retrain", "unlearned"}
    assert not (run_dir / "pairs-unlearned.parquet").exists(), "the failed run must not mix with the archived one"


def test_tag_keeps_variant_apart(tiny_run_overrides, tmp_path):
    result = run_mdrun([*tiny_run_overrides, "method.params.mkr_weight=0", "tag=no_mkr"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir_of(tmp_path, method="multidelete-no_mkr") / "summary.json").is_file()
    assert "| multidelete (no_mkr) |" in (tmp_path / "results" / "table.md").read_text()


def test_invalid_values_are_named(tiny_run_overrides):
    expect_clean_error(run_mdrun([*tiny_run_overrides, "seed=abc"]), "seed must be an integer")
    expect_clean_error(run_mdrun([*tiny_run_overrides, "eval.rerank_k=-1"]), "eval.rerank_k must be at least 0")
    expect_clean_error(run_mdrun([*tiny_run_overrides, "eval.heldout_split=train"]), "eval.heldout_split must be val or test")


def test_corrupt_feature_cache_is_rebuilt(tiny_run_overrides, shared_store):
    assert run_mdrun(tiny_run_overrides).returncode == 0
    features = sorted((shared_store / "cache" / "features").glob("test-*.pt"))
    assert features
    features[0].write_bytes(b"truncated")
    result = run_mdrun(tiny_run_overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ignoring unreadable feature cache" in result.stdout + result.stderr
