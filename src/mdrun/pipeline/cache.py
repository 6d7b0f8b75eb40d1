"""The stage cache: trained models and evaluation results stored under a hash of everything that determines them."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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

    def scores_dir(self, key: str) -> Path:
        return self.root / "scores" / key

    def load_meta(self, stage: str, key: str) -> dict | None:
        path = self.root / stage / f"{key}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None


def save_scores(scores, directory: Path, cost: dict | None = None) -> None:
    """Store a ModelScores, and the cost of computing it, as parquet, .npz and JSON files; none needs unpickling."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for set_name, galleries in scores.rankings.items():
        for index, ranks in enumerate(galleries):
            for direction, values in ranks.items():
                arrays[f"rankings/{set_name}/{index}/{direction}"] = values
    arrays |= {f"embeddings/{key}": value for key, value in scores.embeddings.items()}
    arrays |= {f"labels/{key}": value for key, value in scores.labels.items()}

    temporary = directory / ".arrays.tmp.npz"
    np.savez(temporary, **arrays)
    temporary.replace(directory / "arrays.npz")
    records = directory / ".records.tmp.parquet"
    scores.records.to_parquet(records, index=False)
    records.replace(directory / "records.parquet")
    # Written last: its presence marks a complete entry.
    atomic_write_json({"gallery_sizes": scores.gallery_sizes, "cost": cost or {}}, directory / "scores.json")


def load_scores_cost(directory: Path) -> dict:
    """Read the cost recorded when the cached scores in `directory` were computed."""
    try:
        return json.loads((directory / "scores.json").read_text()).get("cost", {})
    except (OSError, json.JSONDecodeError):
        return {}


def load_scores(directory: Path):
    """Load the ModelScores stored by `save_scores`, or return None when the entry is missing or incomplete."""
    from mdrun.metrics.scores import ModelScores

    if not (directory / "scores.json").is_file():
        return None
    try:
        meta = json.loads((directory / "scores.json").read_text())
        records = pd.read_parquet(directory / "records.parquet")
        with np.load(directory / "arrays.npz", allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, json.JSONDecodeError) as error:
        log.warning("ignoring unreadable cached scores in %s (%s); they will be recomputed", directory, error)
        return None

    rankings: dict[str, list[dict[str, np.ndarray]]] = {}
    embeddings, labels = {}, {}
    for key, value in arrays.items():
        kind, _, rest = key.partition("/")
        if kind == "rankings":
            set_name, index, direction = rest.split("/")
            galleries = rankings.setdefault(set_name, [])
            while len(galleries) <= int(index):
                galleries.append({})
            galleries[int(index)][direction] = value
        elif kind == "embeddings":
            embeddings[rest] = value
        elif kind == "labels":
            labels[rest] = value
    return ModelScores(records=records, rankings=rankings, embeddings=embeddings,
                       gallery_sizes=meta["gallery_sizes"], labels=labels)
