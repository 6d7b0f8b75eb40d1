"""The entry point: compose the config, run the experiment's stages, refresh the result tables.

    python -m mdrun                                   # the embedded default
    python -m mdrun method=multidelete data=flickr30k
    python -m mdrun -m method=multidelete seed=42,87,21
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mdrun.config import CONFIG_DIR, settings_from_config
from mdrun.errors import MdrunError
from mdrun.pipeline.run import Experiment
from mdrun.report import write_tables

log = logging.getLogger("mdrun")


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    hydra_config = HydraConfig.get()
    try:
        settings = settings_from_config(cfg, hydra_config.runtime.output_dir)
        log.info("run folder: %s", settings.run_dir)
        summary = Experiment(settings).run()
    except MdrunError as error:
        log.error("error: %s", error)
        if hydra_config.mode == RunMode.MULTIRUN:
            # One bad job of a sweep is recorded in its summary; the sweep goes on with the others.
            return None
        sys.exit(2)
    except KeyboardInterrupt:
        log.error("interrupted: finished stages are cached, so the same command resumes after them")
        sys.exit(130)

    table = write_tables(settings.runs_dir, settings.results_dir)
    log.info("results: %s and %s updated from %d recorded runs", table.markdown, table.csv, table.runs)
    return summary["models"]["unlearned"].get("deletion_auc/similarity")


if __name__ == "__main__":
    main()
