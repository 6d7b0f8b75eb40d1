"""The in-memory form of a retrieval dataset: images, captions, and which image each caption describes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class RetrievalSplit:
    """One split of an image-text retrieval dataset.

    Deletion is keyed by image: `image_ids` are the sample IDs, and every caption of a deleted
    image belongs to the forget set.
    """

    name: str
    image_ids: list[str]
    image_files: list[Path]
    captions: list[str]
    caption_image: np.ndarray  # int64, for each caption the index of its image in `image_ids`
    image_labels: dict[str, np.ndarray] = field(default_factory=dict)  # optional per-image labels for probes

    def __post_init__(self) -> None:
        self.caption_image = np.asarray(self.caption_image, dtype=np.int64)
        if len(self.captions) != len(self.caption_image):
            raise ValueError("captions and caption_image differ in length")

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_captions(self) -> int:
        return len(self.captions)

    def files_fingerprint(self) -> str:
        """Hash of each image file's path, size and modification time: replaced images change it."""
        digest = hashlib.sha256()
        for file in self.image_files:
            try:
                stat = file.stat()
                digest.update(f"{file}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{file}\tmissing\n".encode())
        return digest.hexdigest()[:16]

    def fingerprint(self) -> str:
        """Hash of the IDs and captions, so caches of features and models can be keyed by content."""
        digest = hashlib.sha256()
        for image_id in self.image_ids:
            digest.update(image_id.encode() + b"\0")
        for caption, image in zip(self.captions, self.caption_image.tolist()):
            digest.update(f"{image}\t{caption}\n".encode())
        return digest.hexdigest()[:16]


@dataclass
class RetrievalDataset:
    """A retrieval dataset with train, val and test splits."""

    name: str
    root: Path
    splits: dict[str, RetrievalSplit]

    @property
    def train(self) -> RetrievalSplit:
        return self.splits["train"]

    @property
    def val(self) -> RetrievalSplit:
        return self.splits["val"]

    @property
    def test(self) -> RetrievalSplit:
        return self.splits["test"]
