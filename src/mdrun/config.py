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


def tag_suffix(tag) -> str:
    """Name the run-folder suffix of a tagged variant: `-<tag>`, or nothing without a tag."""
    return "" if tag in (None, "", "None", "null") else f"-{tag}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("forget_tag"):
        OmegaConf.register_new_resolver("forget_tag", forget_tag)
    if not OmegaConf.has_resolver("tag_suffix"):
        OmegaConf.register_new_resolver("tag_suffix", tag_suffix)


def require_int(value, key: str, minimum: int, allow_none: bool = False) -> int | None:
    """Check one integer setting, so a wrong type fails with the key's name instead of deep in a stage."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MdrunError(f"{key} must be an integer, got {value!r}")
    if value < minimum:
        raise MdrunError(f"{key} must be at least {minimum}, got {value}")
    return value


def validate(config: dict) -> None:
    """Check the settings that the stages would otherwise reject late, after expensive work, or with a traceback."""
    require_int(config["seed"], "seed", 0)
    if not config["forget"].get("ids_file"):
        require_int(config["forget"].get("size"), "forget.size", 1)
    evaluation = config["eval"]
    require_int(evaluation.get("gallery_size"), "eval.gallery_size", 1, allow_none=True)
    require_int(evaluation["retain_chunks"], "eval.retain_chunks", 1)
    require_int(evaluation["rerank_k"], "eval.rerank_k", 0)
    require_int(evaluation["batch_size"], "eval.batch_size", 1)
    if evaluation.get("heldout_split", "test") not in ("val", "test"):
        raise MdrunError(f"eval.heldout_split must be val or test, got {evaluation['heldout_split']!r}")
    train = config["model"].get("train", {})
    require_int(train.get("epochs"), "model.train.epochs", 1)
    require_int(train.get("batch_size"), "model.train.batch_size", 2)
    if "batch_size" in config["method"].get("params", {}):
        require_int(config["method"]["params"]["batch_size"], "method.params.batch_size", 2)


def resolve_device(name: str) -> str:
    # NOTE: evaluation and batching keep inputs on the CPU, so only the CPU is supported for now.
    if name in ("cpu", "auto"):
        return "cpu"
    raise MdrunError(f"device={name} is not supported yet; mdrun runs on the CPU (device=cpu)")


def settings_from_config(cfg: DictConfig, run_dir: str | Path) -> ExperimentSettings:
    """Plain settings for the pipeline; paths become absolute so later stages do not depend on the working directory."""
    config = OmegaConf.to_container(cfg, resolve=True)
    validate(config)
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
