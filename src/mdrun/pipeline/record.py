"""The run record: one summary.json per run next to its resolved config, rewritten after every stage.

A finished stage is on disk before the next one starts, so a later failure does not lose it
(a rerun in the same folder first moves the earlier run's files to .previous/).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from mdrun.storage import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


RUN_FILES = ("summary.json", "config.json", "pairs-*.parquet")


def archive_previous_run(run_dir: Path) -> Path | None:
    """Move an earlier run's files in `run_dir` to `.previous/<time>/`, so a rerun that fails loses nothing."""
    if not (run_dir / SUMMARY_FILE).is_file():
        return None
    archive = run_dir / ".previous" / time.strftime("%Y%m%d-%H%M%S")
    archive.mkdir(parents=True, exist_ok=True)
    for pattern in RUN_FILES:
        for file in run_dir.glob(pattern):
            file.replace(archive / file.name)
    return archive


class RunRecord:
    def __init__(self, run_dir: Path, config: dict[str, Any], run: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        archive = archive_previous_run(self.run_dir)
        if archive:
            log.warning("run folder %s held an earlier run; its files were moved to %s", self.run_dir, archive)
        self.summary: dict[str, Any] = {"run": run, "status": {}, "models": {}, "cost": {}, "config": config}
        atomic_write_text(json.dumps(config, indent=2, default=str) + "\n", self.run_dir / "config.json")
        self.save()

    @property
    def path(self) -> Path:
        return self.run_dir / SUMMARY_FILE

    def save(self) -> None:
        atomic_write_json(self.summary, self.path)

    def set(self, section: str, name: str, value: Any) -> None:
        self.summary.setdefault(section, {})[name] = value
        self.save()

    def stage_done(self, stage: str, cost: dict[str, Any]) -> None:
        self.summary["status"][stage] = "done"
        self.summary["cost"][stage] = cost
        self.save()

    def stage_failed(self, stage: str, error: BaseException) -> None:
        self.summary["status"][stage] = f"failed: {type(error).__name__}: {error}"
        self.save()

    def save_pairs(self, role: str, records: pd.DataFrame) -> Path:
        """Per-pair scores of one model, so any pair-level metric can be recomputed without the model."""
        path = self.run_dir / f"pairs-{role}.parquet"
        temporary = path.with_suffix(".parquet.tmp")
        records.to_parquet(temporary, index=False)
        temporary.replace(path)
        return path


def read_summary(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        log.warning("skipping unreadable run summary %s (%s)", path, error)
        return None
