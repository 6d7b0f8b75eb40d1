"""The model interface that every architecture implements, so every method and metric runs on every model.

Names follow the MultiDelete paper: g_a and g_b are the unimodal embeddings (`embed_a`, `embed_b`),
h is the fused multimodal representation (`fuse`), and `match` is the pair's matching score.
Modality a is the image (or graph), modality b the text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Iterator

import torch
from torch import Tensor, nn

Inputs = dict[str, Tensor]


def index_inputs(inputs: Inputs, index: Tensor) -> Inputs:
    return {key: value[index] for key, value in inputs.items()}


def concat_inputs(first: Inputs, second: Inputs) -> Inputs:
    return {key: torch.cat([first[key], second[key]]) for key in first}


@dataclass
class PairBatch:
    """A batch of (a, b) pairs with the sample ID of each pair (the deletion key: the image index)."""

    a: Inputs
    b: Inputs
    sample_ids: Tensor
    labels: Tensor | None = None

    def __len__(self) -> int:
        return len(self.sample_ids)

    def with_b(self, b: Inputs) -> "PairBatch":
        """Return the same a-side with other b inputs: the unrelated pairs of modality decoupling."""
        return replace(self, b=b)


@dataclass
class SplitInputs:
    """Model-ready inputs of one dataset split: a row per image and a row per caption.

    A CPU-size model keeps precomputed frozen-encoder features here, and a full-size model keeps
    preprocessed pixels and token IDs. Either way batches are built by indexing rows.
    """

    images: Inputs
    texts: Inputs
    caption_image: Tensor  # long, the image row of each caption
    image_labels: dict[str, Tensor] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return len(next(iter(self.images.values())))

    @property
    def num_captions(self) -> int:
        return len(self.caption_image)

    def pair_batch(self, captions: Tensor) -> PairBatch:
        """Build the pairs (image of caption, caption) for the given caption indices."""
        images = self.caption_image[captions]
        return PairBatch(a=index_inputs(self.images, images), b=index_inputs(self.texts, captions), sample_ids=images)

    def image_batches(self, images: Tensor, batch_size: int) -> Iterator[Inputs]:
        for start in range(0, len(images), batch_size):
            yield index_inputs(self.images, images[start : start + batch_size])

    def text_batches(self, captions: Tensor, batch_size: int) -> Iterator[Inputs]:
        for start in range(0, len(captions), batch_size):
            yield index_inputs(self.texts, captions[start : start + batch_size])


class MultimodalModel(nn.Module, ABC):
    """An image-text (or graph-text) model seen through the interface the methods and metrics use."""

    task: str = "retrieval"

    @abstractmethod
    def embed_a(self, a: Inputs) -> Tensor:
        """g_a: normalised projected [CLS] embedding of modality a, shape (batch, embed_dim)."""

    @abstractmethod
    def embed_b(self, b: Inputs) -> Tensor:
        """g_b: normalised projected [CLS] embedding of modality b, shape (batch, embed_dim)."""

    @abstractmethod
    def fuse(self, a: Inputs, b: Inputs) -> Tensor:
        """h(a, b): the fused multimodal representation of each pair, shape (batch, width)."""

    @abstractmethod
    def match_logits(self, fused: Tensor) -> Tensor:
        """Matching-head logits from fused representations, shape (batch, 2); column 1 is 'matched'."""

    @abstractmethod
    def similarity(self, emb_a: Tensor, emb_b: Tensor) -> Tensor:
        """Contrastive logits between every a and every b embedding, shape (len(emb_a), len(emb_b))."""

    @abstractmethod
    def task_loss(self, batch: PairBatch) -> Tensor:
        """Compute the loss the model is trained with on its task (a scalar)."""

    @abstractmethod
    def pair_losses(self, batch: PairBatch) -> Tensor:
        """Compute the task loss of each pair on its own, shape (batch,), for attacks and per-sample methods."""

    def match(self, a: Inputs, b: Inputs) -> Tensor:
        """Score each pair: the matching head's probability of 'matched'."""
        return self.match_logits(self.fuse(a, b)).softmax(dim=-1)[:, 1]

    def pair_similarity(self, a: Inputs, b: Inputs) -> Tensor:
        """Cosine similarity of each pair's unimodal embeddings."""
        return (self.embed_a(a) * self.embed_b(b)).sum(dim=-1)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
