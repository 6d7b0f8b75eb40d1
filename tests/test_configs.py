"""Every config composes, alone and in every combination of the groups a run chooses from."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from mdrun.config import CONFIG_DIR
from mdrun.data import DATASET_LOADERS
from mdrun.methods import METHODS
from mdrun.models import MODELS


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


def compose_config(overrides: list[str]) -> tuple[dict, str]:
    """The resolved job config, and the run folder Hydra would use."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    run_dir = cfg.hydra.run.dir
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=True), run_dir


@pytest.mark.parametrize(
    "data,model,method",
    list(itertools.product(options("data"), options("model"), options("method"))),
)
def test_group_combination_composes(data, model, method):
    resolved, run_dir = compose_config([f"data={data}", f"model={model}", f"method={method}"])
    assert resolved["data"]["loader"] in DATASET_LOADERS
    assert resolved["model"]["arch"] in MODELS
    assert resolved["method"]["name"] in METHODS
    assert run_dir.endswith(f"/{resolved['data']['name']}/{model}/{method}/size60-seed42")


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_composes(experiment):
    resolved, _ = compose_config([f"experiment={experiment}"])
    assert resolved["method"]["name"] in METHODS


def test_method_config_names_match_registry():
    for name in options("method"):
        resolved, _ = compose_config([f"method={name}"])
        assert resolved["method"]["name"] == name, f"configs/method/{name}.yaml names '{resolved['method']['name']}'"


def test_ids_file_sets_run_folder():
    _, run_dir = compose_config(["forget.ids_file=/tmp/delete_these.txt"])
    assert run_dir.endswith("/ids-delete_these-seed42")
