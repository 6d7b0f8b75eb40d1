"""Scoring a model on the evaluation sets: gallery rankings, per-pair records and test embeddings.

Recall depends on the gallery size, so D_f, the D_r sample and D_test are all ranked within
galleries of the same number of images. By default that is the number of deleted images, capped by
the test split, and the size is recorded with the results.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from mdrun.data.forget import ForgetSplit
from mdrun.data.types import RetrievalSplit
from mdrun.errors import MdrunError
from mdrun.metrics.scores import ModelScores
from mdrun.models.base import MultimodalModel, SplitInputs, index_inputs


@dataclass
class EvalSets:
    """Galleries of image indices per set: forget and retain index the train split, test the held-out split.

    `auc_chunks` splits the D_r sample into disjoint chunks the size of D_f for the deletion AUC.
    `heldout_split` is "test", or "val" when tuning hyperparameters without touching D_test.
    """

    galleries: dict[str, list[np.ndarray]]
    auc_chunks: list[np.ndarray]
    gallery_size: int
    heldout_split: str = "test"


    def fingerprint(self) -> str:
        """Hash of every gallery and chunk, so cached scores are reused only for the same pairs."""
        digest = hashlib.sha256(self.heldout_split.encode())
        for name in sorted(self.galleries):
            for gallery in self.galleries[name]:
                digest.update(name.encode() + np.asarray(gallery, dtype=np.int64).tobytes())
        for auc_chunk in self.auc_chunks:
            digest.update(b"chunk" + np.asarray(auc_chunk, dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]


def chunk(images: np.ndarray, size: int) -> list[np.ndarray]:
    return [images[start : start + size] for start in range(0, len(images) - size + 1, size)]


def build_eval_sets(
    train: RetrievalSplit, test: RetrievalSplit, forget: ForgetSplit, gallery_size: int | None, retain_chunks: int, seed: int
) -> EvalSets:
    """Draw the galleries once per run, so every model of the run is scored on the same pairs."""
    rng = np.random.default_rng(seed)
    n_forget = len(forget.forget_images)
    size = gallery_size or min(n_forget, test.num_images)
    if size > min(n_forget, test.num_images):
        raise MdrunError(
            f"eval.gallery_size={size} is larger than the forget set ({n_forget} images) or the test split "
            f"({test.num_images} images); choose at most {min(n_forget, test.num_images)}"
        )

    available = len(forget.retain_images) // n_forget
    if available < 1:
        raise MdrunError(f"the retain set ({len(forget.retain_images)} images) is smaller than the forget set ({n_forget}); delete fewer images")
    chunks = min(retain_chunks, available)
    retain_sample = rng.choice(forget.retain_images, size=chunks * n_forget, replace=False)
    auc_chunks = chunk(retain_sample, n_forget)

    galleries = {
        "test": chunk(rng.permutation(test.num_images), size),
        "forget": chunk(rng.permutation(forget.forget_images), size),
        "retain": chunk(retain_sample, size),
    }
    return EvalSets(galleries=galleries, auc_chunks=auc_chunks, gallery_size=size, heldout_split=test.name)


def best_ranks(scores: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """For each row, the 0-based rank of its best-scored true column (ties count against it)."""
    best_true = scores.masked_fill(~truth, float("-inf")).max(dim=1).values
    return (scores > best_true[:, None]).sum(dim=1).numpy()


@torch.inference_mode()
def rerank(model: MultimodalModel, scores: torch.Tensor, a_inputs, b_inputs, k: int, batch_size: int, transpose: bool) -> torch.Tensor:
    """ALBEF's ranking: the top-k candidates of each query by contrastive similarity, rescored by the matching head."""
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    rows = torch.arange(len(scores)).repeat_interleave(k)
    cols = top.flatten()
    image_rows, text_rows = (cols, rows) if transpose else (rows, cols)
    logits = []
    for start in range(0, len(rows), batch_size):
        a = index_inputs(a_inputs, image_rows[start : start + batch_size])
        b = index_inputs(b_inputs, text_rows[start : start + batch_size])
        logits.append(model.match_logits(model.fuse(a, b)).log_softmax(dim=-1)[:, 1])
    reranked = scores - 1e4  # keeps candidates outside the top k below, in their contrastive order
    reranked[rows, cols] = torch.cat(logits)
    return reranked


@torch.inference_mode()
def embed(model: MultimodalModel, inputs: SplitInputs, images: torch.Tensor, captions: torch.Tensor, batch_size: int):
    emb_a = torch.cat([model.embed_a(batch) for batch in inputs.image_batches(images, batch_size)])
    emb_b = torch.cat([model.embed_b(batch) for batch in inputs.text_batches(captions, batch_size)])
    return emb_a, emb_b


@torch.inference_mode()
def score_gallery(model: MultimodalModel, inputs: SplitInputs, images: np.ndarray, rerank_k: int, batch_size: int):
    images_t = torch.as_tensor(images, dtype=torch.long)
    captions = torch.nonzero(torch.isin(inputs.caption_image, images_t)).squeeze(1)
    emb_a, emb_b = embed(model, inputs, images_t, captions, batch_size)
    similarity = emb_a @ emb_b.T
    truth = inputs.caption_image[captions][None, :] == images_t[:, None]

    image_inputs = index_inputs(inputs.images, images_t)
    text_inputs = index_inputs(inputs.texts, captions)
    image_to_text, text_to_image = similarity, similarity.T
    if rerank_k:
        image_to_text = rerank(model, similarity, image_inputs, text_inputs, rerank_k, batch_size, transpose=False)
        text_to_image = rerank(model, similarity.T, image_inputs, text_inputs, rerank_k, batch_size, transpose=True)
    rankings = {"image_to_text": best_ranks(image_to_text, truth), "text_to_image": best_ranks(text_to_image, truth.T)}

    position = torch.full((inputs.num_images,), -1, dtype=torch.long)
    position[images_t] = torch.arange(len(images_t))
    image_of_caption = position[inputs.caption_image[captions]]
    matching, losses = [], []
    for start in range(0, len(captions), batch_size):
        batch = inputs.pair_batch(captions[start : start + batch_size])
        matching.append(model.match(batch.a, batch.b))
        losses.append(model.pair_losses(batch))
    records = pd.DataFrame({
        "caption_index": captions.numpy(),
        "image_row": inputs.caption_image[captions].numpy(),
        "similarity": similarity[image_of_caption, torch.arange(len(captions))].numpy(),
        "matching": torch.cat(matching).numpy(),
        "loss": torch.cat(losses).numpy(),
    })
    return rankings, records


def score_model(
    model: MultimodalModel,
    split_inputs: dict[str, SplitInputs],
    splits: dict[str, RetrievalSplit],
    sets: EvalSets,
    rerank_k: int,
    batch_size: int,
    desc: str,
) -> ModelScores:
    """Rank every gallery, score every evaluated pair, and embed the test split, for one model."""
    model.eval()
    source_split = {"test": sets.heldout_split, "forget": "train", "retain": "train"}
    rankings: dict[str, list] = {}
    tables = []
    total = sum(len(galleries) for galleries in sets.galleries.values())
    progress = tqdm(total=total, desc=desc, unit="gallery", leave=False)
    for set_name, galleries in sets.galleries.items():
        split = splits[source_split[set_name]]
        inputs = split_inputs[source_split[set_name]]
        rankings[set_name] = []
        for gallery_index, images in enumerate(galleries):
            ranks, records = score_gallery(model, inputs, images, rerank_k, batch_size)
            rankings[set_name].append(ranks)
            records.insert(0, "gallery", gallery_index)
            records.insert(0, "set", set_name)
            records.insert(2, "image_id", [split.image_ids[row] for row in records.pop("image_row")])
            tables.append(records)
            progress.update()
    progress.close()

    records = pd.concat(tables, ignore_index=True)
    chunk_of_image = {train_row: index for index, rows in enumerate(sets.auc_chunks) for train_row in rows.tolist()}
    train_ids = {image_id: row for row, image_id in enumerate(splits["train"].image_ids)}
    records["auc_chunk"] = [
        chunk_of_image.get(train_ids[image_id], -1) if set_name == "retain" else -1
        for set_name, image_id in zip(records["set"], records["image_id"])
    ]

    test_inputs = split_inputs[sets.heldout_split]
    emb_a, emb_b = embed(
        model, test_inputs, torch.arange(test_inputs.num_images), torch.arange(test_inputs.num_captions), batch_size
    )
    return ModelScores(
        records=records,
        rankings=rankings,
        embeddings={"image": emb_a.numpy(), "text": emb_b.numpy()},
        gallery_sizes={name: sets.gallery_size for name in sets.galleries},
        labels={name: values.numpy() for name, values in test_inputs.image_labels.items()},
    )
