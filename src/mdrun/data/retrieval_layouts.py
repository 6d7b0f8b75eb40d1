"""Loaders for Flickr30K and COCO retrieval in the LAVIS/ALBEF layout and in the Karpathy layout.

LAVIS/ALBEF layout (root/annotations/{train,val,test}.json, images under root/images/):
    train: one record per caption, {"image": "flickr30k-images/1000092795.jpg", "caption": "...", "image_id": "..."}
    val/test: one record per image, {"image": "...", "caption": ["...", "...", ...]}
Karpathy layout (one file, e.g. root/dataset_flickr30k.json):
    {"images": [{"filename": "...", "filepath": "...", "split": "train|val|test|restval", "sentences": [{"raw": "..."}]}]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mdrun.data.registry import DATASET_LOADERS
from mdrun.data.types import RetrievalDataset, RetrievalSplit
from mdrun.errors import MdrunError

SPLITS = ("train", "val", "test")


def missing_dataset_error(name: str, root: Path, expected: list[str], source: str) -> MdrunError:
    return MdrunError(
        f"dataset '{name}' not found at {root}\n"
        f"  expected files: {', '.join(expected)}\n"
        f"  where it comes from: {source}\n"
        f"  fix: set paths.data_dir (or data.root) to the folder that holds it, "
        f"or run the embedded default data instead: python -m mdrun data=scenes"
    )


def read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise MdrunError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            "replace it with an intact copy of the annotation file"
        ) from None


def record_field(record: Any, key: str, path: Path, index: int) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise MdrunError(
            f"{path}, record {index}: missing field '{key}' in {str(record)[:200]}; "
            "every record of this layout needs it"
        )
    return record[key]


def check_image_files(split: RetrievalSplit, path_hint: Path) -> None:
    missing = [str(file) for file in split.image_files if not file.is_file()]
    if missing:
        raise MdrunError(
            f"{len(missing)} of {split.num_images} images of split '{split.name}' named in {path_hint} "
            f"are missing, for example: {', '.join(missing[:3])}; "
            "check data.image_dir, or set data.check_images=false to skip this check"
        )


def build_split(name: str, image_dir: Path, image_captions: dict[str, list[str]]) -> RetrievalSplit:
    image_ids = list(image_captions)
    captions: list[str] = []
    caption_image: list[int] = []
    for index, image_id in enumerate(image_ids):
        for caption in image_captions[image_id]:
            captions.append(caption)
            caption_image.append(index)
    return RetrievalSplit(
        name=name,
        image_ids=image_ids,
        image_files=[image_dir / image_id for image_id in image_ids],
        captions=captions,
        caption_image=np.asarray(caption_image, dtype=np.int64),
    )


def read_lavis_split(path: Path, split_name: str) -> dict[str, list[str]]:
    records = read_json(path)
    if not isinstance(records, list):
        raise MdrunError(f"{path}: expected a JSON list of records, found {type(records).__name__}")

    image_captions: dict[str, list[str]] = {}
    for index, record in enumerate(records):
        image = record_field(record, "image", path, index)
        caption = record_field(record, "caption", path, index)
        captions = caption if isinstance(caption, list) else [caption]
        if not captions or not all(isinstance(text, str) and text.strip() for text in captions):
            raise MdrunError(f"{path}, record {index}: 'caption' must be a non-empty string or list of strings")
        image_captions.setdefault(image, []).extend(captions)

    if not image_captions:
        raise MdrunError(f"{path}: split '{split_name}' has no records")
    return image_captions


@DATASET_LOADERS.register("lavis_retrieval")
def load_lavis_retrieval(
    name: str, root: str | Path, source: str = "", image_dir: str = "images", check_images: bool = True
) -> RetrievalDataset:
    """Load a retrieval dataset from the LAVIS/ALBEF annotation layout."""
    root = Path(root)
    expected = [f"annotations/{split}.json" for split in SPLITS] + [f"{image_dir}/"]
    if not root.is_dir():
        raise missing_dataset_error(name, root, expected, source)
    missing = [file for file in expected[:3] if not (root / file).is_file()]
    if missing:
        raise missing_dataset_error(name, root, missing, source)

    splits = {}
    for split_name in SPLITS:
        path = root / "annotations" / f"{split_name}.json"
        split = build_split(split_name, root / image_dir, read_lavis_split(path, split_name))
        if check_images:
            check_image_files(split, path)
        splits[split_name] = split
    return RetrievalDataset(name=name, root=root, splits=splits)


@DATASET_LOADERS.register("karpathy_retrieval")
def load_karpathy_retrieval(
    name: str,
    root: str | Path,
    source: str = "",
    annotation_file: str = "dataset_flickr30k.json",
    image_dir: str = "images",
    check_images: bool = True,
) -> RetrievalDataset:
    """Load a retrieval dataset from Karpathy's single-file split; 'restval' images join train."""
    root = Path(root)
    path = root / annotation_file
    if not path.is_file():
        raise missing_dataset_error(name, root, [annotation_file, f"{image_dir}/"], source)

    content = read_json(path)
    images = content.get("images") if isinstance(content, dict) else None
    if not isinstance(images, list):
        raise MdrunError(f"{path}: expected an object with an 'images' list (Karpathy layout)")

    per_split: dict[str, dict[str, list[str]]] = {split: {} for split in SPLITS}
    for index, record in enumerate(images):
        filename = record_field(record, "filename", path, index)
        split_name = record_field(record, "split", path, index)
        sentences = record_field(record, "sentences", path, index)
        split_name = "train" if split_name == "restval" else split_name
        if split_name not in per_split:
            raise MdrunError(f"{path}, record {index}: unknown split '{split_name}'; expected train, restval, val or test")
        image_id = f"{record['filepath']}/{filename}" if record.get("filepath") else filename
        try:
            captions = [sentence["raw"] for sentence in sentences]
        except (TypeError, KeyError):
            raise MdrunError(f"{path}, record {index}: every sentence needs a 'raw' field") from None
        if not captions or not all(isinstance(text, str) and text.strip() for text in captions):
            raise MdrunError(f"{path}, record {index} ({filename}): 'sentences' must hold at least one non-empty 'raw' caption")
        per_split[split_name][image_id] = captions

    splits = {}
    for split_name in SPLITS:
        if not per_split[split_name]:
            raise MdrunError(f"{path}: split '{split_name}' has no images")
        split = build_split(split_name, root / image_dir, per_split[split_name])
        if check_images:
            check_image_files(split, path)
        splits[split_name] = split
    return RetrievalDataset(name=name, root=root, splits=splits)
