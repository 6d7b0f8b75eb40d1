"""Forget-set selection: which training images a deletion request names, and so which pairs form D_f and D_r."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mdrun.data.types import RetrievalSplit
from mdrun.errors import MdrunError


@dataclass
class ForgetSplit:
    """The training images to delete and the ones to keep, as sorted indices into the train split."""

    forget_images: np.ndarray
    retain_images: np.ndarray

    def pairs_of(self, split: RetrievalSplit, images: np.ndarray) -> np.ndarray:
        """Caption indices of every pair whose image is in `images`."""
        return np.flatnonzero(np.isin(split.caption_image, images))

    def forget_pairs(self, split: RetrievalSplit) -> np.ndarray:
        return self.pairs_of(split, self.forget_images)

    def retain_pairs(self, split: RetrievalSplit) -> np.ndarray:
        return self.pairs_of(split, self.retain_images)

    def fingerprint(self, split: RetrievalSplit) -> str:
        """Hash of the deleted sample IDs: everything a retrained model depends on beyond the dataset."""
        names = "\n".join(sorted(split.image_ids[i] for i in self.forget_images))
        return hashlib.sha256(names.encode()).hexdigest()[:16]


def read_id_file(path: Path) -> list[str]:
    """Read sample IDs: a JSON list, or one ID per line with blank lines and '#' comments skipped."""
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "not found"
        raise MdrunError(f"forget ID file {path} {problem}; set forget.ids_file to a file of sample IDs, one per line")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            ids = json.loads(text)
        except json.JSONDecodeError as error:
            raise MdrunError(f"{path} starts like a JSON list but is not valid JSON (line {error.lineno}: {error.msg})") from None
        return [str(sample_id) for sample_id in ids]
    ids = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [sample_id for sample_id in ids if sample_id]


def match_ids(split: RetrievalSplit, requested: list[str], path: Path) -> np.ndarray:
    """Map sample IDs to image indices; an ID may be the full annotation path or its unique file name."""
    by_id = {image_id: index for index, image_id in enumerate(split.image_ids)}
    by_name: dict[str, list[int]] = {}
    for index, image_id in enumerate(split.image_ids):
        by_name.setdefault(Path(image_id).name, []).append(index)

    indices, unknown = [], []
    for sample_id in requested:
        if sample_id in by_id:
            indices.append(by_id[sample_id])
        elif len(by_name.get(Path(sample_id).name, [])) == 1:
            indices.append(by_name[Path(sample_id).name][0])
        else:
            unknown.append(sample_id)

    if unknown:
        raise MdrunError(
            f"{len(unknown)} of {len(requested)} IDs in {path} are not images of the training set, "
            f"for example: {', '.join(unknown[:5])}\n"
            f"  training IDs look like: {', '.join(split.image_ids[:3])}\n"
            "  fix: list training image IDs only (val and test images cannot be deleted)"
        )
    return np.unique(np.asarray(indices, dtype=np.int64))


def select_forget(split: RetrievalSplit, size: int | None, ids_file: str | None, seed: int) -> ForgetSplit:
    """Choose D_f: the images named in `ids_file`, or `size` images drawn uniformly with `seed`."""
    if ids_file:
        path = Path(ids_file)
        forget = match_ids(split, read_id_file(path), path)
        source = f"ID file {path}"
    else:
        if size is None or size < 1:
            raise MdrunError(f"forget.size must be a positive number of training images, got {size}")
        if size >= split.num_images:
            raise MdrunError(
                f"forget.size={size} is not smaller than the {split.num_images} training images, "
                "so the retain set would be empty; choose a smaller forget.size"
            )
        rng = np.random.default_rng(seed)
        forget = np.sort(rng.choice(split.num_images, size=size, replace=False))
        source = f"forget.size={size}"

    if len(forget) == 0:
        raise MdrunError(f"the forget set from {source} is empty; name at least one training image")
    retain = np.setdiff1d(np.arange(split.num_images), forget)
    if len(retain) == 0:
        raise MdrunError(f"the forget set from {source} names every training image, so the retain set is empty")
    return ForgetSplit(forget_images=forget, retain_images=retain)
