"""Cost of unlearning against Retrain, measured in one process on the same data, model and machine.

    python scripts/bench.py                          # MultiDelete on the embedded default
    python scripts/bench.py method=neggrad forget.size=120

Prints each stage's wall time and peak memory and the ratio unlearning / Retrain. Retrain is
trained afresh here and never read from the cache, so both figures come from this run. The original
model is loaded from the cache when present, and trained untimed otherwise.
"""

from __future__ import annotations

import copy
import logging
import sys
import tempfile

import torch
from hydra import compose, initialize_config_dir

from mdrun.config import CONFIG_DIR, settings_from_config
from mdrun.methods import UnlearningData, build_method
from mdrun.pipeline.meter import StageMeter
from mdrun.pipeline.run import Experiment
from mdrun.training import train_on_task

# The target of the default setting: unlearning costs at most a tenth of retraining.
TARGET_RATIO = 0.10


def main(overrides: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    settings = settings_from_config(cfg, tempfile.mkdtemp(prefix="mdrun-bench-"))
    experiment = Experiment(settings)

    dataset = experiment.load_data()
    forget = experiment.split_forget(dataset)
    inputs = experiment.prepare_inputs(dataset)
    train = dataset.train
    forget_pairs = torch.from_numpy(forget.forget_pairs(train))
    retain_pairs = torch.from_numpy(forget.retain_pairs(train))
    original = experiment.trained_model(
        "original", experiment.model_key(dataset, {}), inputs["train"], torch.arange(train.num_captions)
    )

    with StageMeter() as retrain_meter:
        retrained = experiment.fresh_model(inputs["train"])
        train_on_task(retrained, inputs["train"], retain_pairs, experiment.recipe(), settings.seed, desc="bench retrain")

    method = build_method(settings.method["name"], **settings.method.get("params", {}))
    data = UnlearningData(inputs=inputs["train"], forget=forget_pairs, retain=retain_pairs,
                          fresh_model=lambda: experiment.fresh_model(inputs["train"]), recipe=experiment.recipe())
    with StageMeter() as unlearn_meter:
        method(copy.deepcopy(original), data, settings.seed)

    ratio = unlearn_meter.cost.seconds / retrain_meter.cost.seconds
    name = settings.method["name"]
    print(f"setting: {settings.data['name']} / {settings.model['name']}, {len(forget.forget_images)} deleted images "
          f"({len(forget_pairs)} pairs), {len(retain_pairs)} retained pairs, {torch.get_num_threads()} threads")
    print(f"retrain:     {retrain_meter.cost.seconds:8.1f} s   peak memory {retrain_meter.cost.peak_rss_mb:7.0f} MB")
    print(f"{name:<12} {unlearn_meter.cost.seconds:8.1f} s   peak memory {unlearn_meter.cost.peak_rss_mb:7.0f} MB")
    print(f"ratio {name} / retrain = {ratio:.3f} (speed-up {1 / ratio:.1f}x; target ratio <= {TARGET_RATIO})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
