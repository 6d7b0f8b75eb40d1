"""The stage cache: trained models and evaluation results stored under a hash of everything that determines them."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from mdrun.storage import atomic_torch_save, atomic_write_json, load_tensors

log = logging.getLogger(__name__)

# Bump when a change to training or evaluation code makes old cached results wrong.
CACHE_VERSION = 1


def cache_key(parts: dict[str, Any]) -> str:
    blob = json.dumps({"cache_version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class StageCache:
    """Files under `root/<stage>/<key>.*`, written atomically so an interrupted run never leaves a corrupt entry."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def model_path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.pt"

    def load_state(self, stage: str, key: str) -> dict | None:
        path = self.model_path(stage, key)
        if not path.is_file():
            return None
        try:
            return load_tensors(path)
        except Exception as error:  # a truncated or foreign file: retrain rather than crash
            log.warning("ignoring unreadable cache entry %s (%s); it will be rebuilt", path, error)
            return None

    def save_state(self, stage: str, key: str, state: dict, meta: dict) -> None:
        atomic_torch_save(state, self.model_path(stage, key))
        atomic_write_json(meta, self.root / stage / f"{key}.json")

    def load_meta(self, stage: str, key: str) -> dict | None:
        path = self.root / stage / f"{key}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
