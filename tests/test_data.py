"""Dataset loaders in their real layouts, the generated scenes, and forget-set selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mdrun.data import load_dataset
from mdrun.data.forget import select_forget
from mdrun.data.scenes import load_scenes
from mdrun.errors import MdrunError

CAPTIONS = {
    "flickr30k-images/1.jpg": ["a dog runs", "a brown dog", "dog on grass", "a running dog", "an animal"],
    "flickr30k-images/2.jpg": ["two men talk", "men in suits", "a meeting", "people talking", "two people"],
    "flickr30k-images/3.jpg": ["a red car", "a car parked", "red vehicle", "a sedan", "car on a street"],
}
SPLIT_OF = {"flickr30k-images/1.jpg": "train", "flickr30k-images/2.jpg": "train", "flickr30k-images/3.jpg": "test"}


def write_images(root: Path) -> None:
    for image in CAPTIONS:
        path = root / "images" / image
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not decoded by the loader")


def write_lavis(root: Path) -> None:
    write_images(root)
    (root / "annotations").mkdir(parents=True)
    train = [
        {"image": image, "caption": caption, "image_id": image.split("/")[-1][:-4]}
        for image, captions in CAPTIONS.items() if SPLIT_OF[image] == "train" for caption in captions
    ]
    test = [{"image": image, "caption": captions} for image, captions in CAPTIONS.items() if SPLIT_OF[image] == "test"]
    (root / "annotations" / "train.json").write_text(json.dumps(train))
    (root / "annotations" / "val.json").write_text(json.dumps(test))
    (root / "annotations" / "test.json").write_text(json.dumps(test))


def write_karpathy(root: Path) -> None:
    write_images(root)
    images = [
        {"filename": image.split("/")[-1], "filepath": "flickr30k-images",
         "split": "restval" if image.endswith("2.jpg") else SPLIT_OF[image],
         "sentences": [{"raw": caption} for caption in captions]}
        for image, captions in CAPTIONS.items()
    ]
    images.append({**images[2], "split": "val"})
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": images}))


def test_lavis_layout_loads(tmp_path):
    write_lavis(tmp_path)
    dataset = load_dataset("flickr30k", "lavis_retrieval", root=tmp_path)
    assert dataset.train.image_ids == ["flickr30k-images/1.jpg", "flickr30k-images/2.jpg"]
    assert dataset.train.num_captions == 10
    assert dataset.train.caption_image.tolist() == [0] * 5 + [1] * 5
    assert dataset.test.captions == CAPTIONS["flickr30k-images/3.jpg"]
    assert dataset.train.image_files[0] == tmp_path / "images" / "flickr30k-images/1.jpg"


def test_karpathy_layout_loads(tmp_path):
    write_karpathy(tmp_path)
    dataset = load_dataset("flickr30k", "karpathy_retrieval", root=tmp_path)
    assert dataset.train.num_images == 2, "restval images must join train"
    assert dataset.train.captions[:5] == CAPTIONS["flickr30k-images/1.jpg"]
    assert dataset.test.image_ids == ["flickr30k-images/3.jpg"]


def test_both_layouts_give_same_pairs(tmp_path):
    write_lavis(tmp_path / "lavis")
    write_karpathy(tmp_path / "karpathy")
    lavis = load_dataset("f", "lavis_retrieval", root=tmp_path / "lavis")
    karpathy = load_dataset("f", "karpathy_retrieval", root=tmp_path / "karpathy")
    assert lavis.train.captions == karpathy.train.captions
    assert lavis.train.image_ids == karpathy.train.image_ids


def test_missing_dataset_error_guides_user(tmp_path):
    with pytest.raises(MdrunError) as error:
        load_dataset("flickr30k", "lavis_retrieval", root=tmp_path / "absent", source="the Flickr30K authors")
    message = str(error.value)
    assert str(tmp_path / "absent") in message
    assert "annotations/train.json" in message
    assert "the Flickr30K authors" in message
    assert "data=scenes" in message


def test_malformed_json_names_file_and_line(tmp_path):
    write_lavis(tmp_path)
    (tmp_path / "annotations" / "train.json").write_text('[{"image": "x.jpg",\n "caption": }]')
    with pytest.raises(MdrunError, match=r"train\.json is not valid JSON \(line 2"):
        load_dataset("flickr30k", "lavis_retrieval", root=tmp_path)


def test_record_without_caption_names_record(tmp_path):
    write_lavis(tmp_path)
    (tmp_path / "annotations" / "train.json").write_text(json.dumps([{"image": "a.jpg", "caption": "x"}, {"image": "b.jpg"}]))
    with pytest.raises(MdrunError, match=r"record 1: missing field 'caption'"):
        load_dataset("flickr30k", "lavis_retrieval", root=tmp_path)


def test_missing_images_are_reported(tmp_path):
    write_lavis(tmp_path)
    (tmp_path / "images" / "flickr30k-images" / "2.jpg").unlink()
    with pytest.raises(MdrunError, match=r"1 of 2 images .* missing, for example: .*2\.jpg"):
        load_dataset("flickr30k", "lavis_retrieval", root=tmp_path)


def test_scenes_are_deterministic_and_reused(tmp_path):
    sizes = dict(train_images=30, val_images=4, test_images=6)
    first = load_scenes("scenes", tmp_path / "a", seed=3, **sizes)
    second = load_scenes("scenes", tmp_path / "b", seed=3, **sizes)
    assert first.train.captions == second.train.captions
    assert (tmp_path / "a" / "images" / first.train.image_ids[0]).read_bytes() == (
        tmp_path / "b" / "images" / second.train.image_ids[0]).read_bytes()

    marker = tmp_path / "a" / "images" / "marker"
    marker.write_text("kept")
    load_scenes("scenes", tmp_path / "a", seed=3, **sizes)
    assert marker.exists(), "a matching generation must be reused, not rewritten"

    other_seed = load_scenes("scenes", tmp_path / "a", seed=4, **sizes)
    assert other_seed.train.captions != first.train.captions


def test_scene_captions_are_varied(tmp_path):
    dataset = load_scenes("scenes", tmp_path, seed=0, train_images=200, val_images=4, test_images=4)
    train = dataset.train
    assert np.bincount(train.caption_image).tolist() == [5] * 200
    assert len(set(train.captions)) / train.num_captions > 0.95
    assert all(len(set(train.captions[i * 5:(i + 1) * 5])) == 5 for i in range(200))
    assert set(train.image_ids).isdisjoint(dataset.test.image_ids)
    assert set(train.image_labels) == {"background", "object_count", "first_shape", "first_color"}


@pytest.fixture
def train_split(tmp_path):
    write_lavis(tmp_path)
    return load_dataset("flickr30k", "lavis_retrieval", root=tmp_path).train


def test_forget_by_size_is_seeded(train_split):
    first = select_forget(train_split, size=1, ids_file=None, seed=42)
    again = select_forget(train_split, size=1, ids_file=None, seed=42)
    assert first.forget_images.tolist() == again.forget_images.tolist()
    assert len(first.forget_pairs(train_split)) == 5
    assert len(first.retain_pairs(train_split)) == 5


def test_forget_size_too_large(train_split):
    with pytest.raises(MdrunError, match=r"forget.size=2 is not smaller than the 2 training images"):
        select_forget(train_split, size=2, ids_file=None, seed=0)


def test_forget_ids_file_by_path_or_name(train_split, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("# request 17\n2.jpg\n")
    forget = select_forget(train_split, size=None, ids_file=str(ids), seed=0)
    assert forget.forget_images.tolist() == [1]
    ids.write_text(json.dumps(["flickr30k-images/1.jpg"]))
    assert select_forget(train_split, size=None, ids_file=str(ids), seed=0).forget_images.tolist() == [0]


def test_forget_ids_not_in_training_set(train_split, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("flickr30k-images/3.jpg\nmissing.jpg\n")
    with pytest.raises(MdrunError) as error:
        select_forget(train_split, size=None, ids_file=str(ids), seed=0)
    assert "2 of 2 IDs" in str(error.value)
    assert "flickr30k-images/3.jpg" in str(error.value)
    assert "missing.jpg" in str(error.value)


def test_empty_ids_file(train_split, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("# nothing\n")
    with pytest.raises(MdrunError, match="empty"):
        select_forget(train_split, size=None, ids_file=str(ids), seed=0)


def test_ids_file_trailing_comment(train_split, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("2.jpg  # requested by the image's owner\n")
    assert select_forget(train_split, size=None, ids_file=str(ids), seed=0).forget_images.tolist() == [1]


def test_karpathy_image_without_captions(tmp_path):
    write_karpathy(tmp_path)
    content = json.loads((tmp_path / "dataset_flickr30k.json").read_text())
    content["images"][0]["sentences"] = []
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps(content))
    with pytest.raises(MdrunError, match=r"record 0 \(1\.jpg\): 'sentences' must hold"):
        load_dataset("flickr30k", "karpathy_retrieval", root=tmp_path)


def test_replaced_image_changes_files_fingerprint(tmp_path):
    write_lavis(tmp_path)
    before = load_dataset("flickr30k", "lavis_retrieval", root=tmp_path).train
    pairs_before, files_before = before.fingerprint(), before.files_fingerprint()
    (tmp_path / "images" / "flickr30k-images" / "1.jpg").write_bytes(b"another image, another size")
    after = load_dataset("flickr30k", "lavis_retrieval", root=tmp_path).train
    assert after.fingerprint() == pairs_before
    assert after.files_fingerprint() != files_before
