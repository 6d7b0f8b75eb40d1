"""Hydra config helpers: the custom resolver the configs use and the conversion to plain settings."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mdrun.errors import MdrunError
from mdrun.pipeline.settings import ExperimentSettings

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def forget_tag(size, ids_file) -> str:
    """Name the run folder of a forget set: `size60`, or `ids-<file stem>` for an ID file."""
    if ids_file not in (None, "", "None", "null"):
        return f"ids-{Path(str(ids_file)).stem}"
    return f"size{size}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("forget_tag"):
        OmegaConf.register_new_resolver("forget_tag", forget_tag)


def resolve_device(name: str) -> str:
    # NOTE: evaluation and batching keep inputs on the CPU, so only the CPU is supported for now.
    if name in ("cpu", "auto"):
        return "cpu"
    raise MdrunError(f"device={name} is not supported yet; mdrun runs on the CPU (device=cpu)")


def settings_from_config(cfg: DictConfig, run_dir: str | Path) -> ExperimentSettings:
    """Plain settings for the pipeline; paths become absolute so later stages do not depend on the working directory."""
    config = OmegaConf.to_container(cfg, resolve=True)
    paths = {key: Path(value).resolve() for key, value in config["paths"].items()}
    data = dict(config["data"])
    if "root" in data:
        data["root"] = str(Path(data["root"]).resolve())
    return ExperimentSettings(
        data=data,
        model=config["model"],
        method=config["method"],
        forget=config["forget"],
        evaluation=config["eval"],
        seed=int(config["seed"]),
        run_dir=Path(run_dir).resolve(),
        cache_dir=paths["cache_dir"],
        runs_dir=paths["output_dir"] / "runs",
        results_dir=paths["results_dir"],
        config=config,
        device=resolve_device(config.get("device", "cpu")),
    )


register_resolvers()
