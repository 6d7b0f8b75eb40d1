"""Shared fixtures: a tiny ALBEF-style model over random token features, and tiny config overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mdrun.models.albef_small import AlbefSmall
from mdrun.models.base import SplitInputs
from mdrun.training import Recipe, train_on_task

TINY_RUN_OVERRIDES = [
    "data.train_images=40",
    "data.val_images=10",
    "data.test_images=16",
    "forget.size=6",
    "model.train.epochs=2",
    "model.params.width=32",
    "model.params.heads=2",
    "model.params.embed_dim=16",
    "method.params.epochs=1",
    "eval.rerank_k=4",
]


def make_tiny_inputs(num_images: int = 12, captions_per_image: int = 3, seed: int = 0) -> SplitInputs:
    """Random image and text token features with a learnable image-caption association."""
    generator = torch.Generator().manual_seed(seed)
    image_tokens = torch.randn(num_images, 4, 16, generator=generator)
    caption_image = torch.arange(num_images).repeat_interleave(captions_per_image)
    # Each caption carries a noisy copy of its image's mean token, so pairs can be matched.
    text_tokens = torch.randn(len(caption_image), 6, 12, generator=generator) * 0.5
    text_tokens[:, :, :12] += image_tokens[caption_image].mean(dim=1, keepdim=True)[:, :, :12]
    mask = torch.ones(len(caption_image), 6, dtype=torch.bool)
    mask[::2, 4:] = False
    return SplitInputs(
        images={"tokens": image_tokens},
        texts={"tokens": text_tokens, "mask": mask},
        caption_image=caption_image,
        image_labels={"parity": torch.arange(num_images) % 2},
    )


def make_tiny_model(inputs: SplitInputs, seed: int = 0) -> AlbefSmall:
    torch.manual_seed(seed)
    return AlbefSmall.build(inputs, width=32, heads=2, unimodal_layers=1, fusion_layers=1, embed_dim=16, dropout=0.0)


@pytest.fixture
def tiny_inputs() -> SplitInputs:
    return make_tiny_inputs()


@pytest.fixture
def tiny_model(tiny_inputs) -> AlbefSmall:
    return make_tiny_model(tiny_inputs)


@pytest.fixture
def trained_tiny_model(tiny_inputs) -> AlbefSmall:
    """A tiny model trained on every pair, so it has associations to unlearn."""
    model = make_tiny_model(tiny_inputs)
    recipe = Recipe(epochs=30, batch_size=12, lr=3e-3, weight_decay=0.0, warmup_ratio=0.0)
    train_on_task(model, tiny_inputs, torch.arange(tiny_inputs.num_captions), recipe, seed=0, desc="train tiny")
    return model


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory) -> Path:
    """Generated data and the stage cache shared by every run of the session.

    The frozen encoders then run once per session, and runs that differ only in the method reuse
    the cached original and retrained models.
    """
    return tmp_path_factory.mktemp("shared")


@pytest.fixture
def tiny_run_overrides(tmp_path, shared_store) -> list[str]:
    """Hydra overrides for an end-to-end run in seconds; run folders and tables go under `tmp_path`."""
    return [
        f"paths.root_dir={tmp_path}",
        f"paths.data_dir={shared_store}/data",
        f"paths.cache_dir={shared_store}/cache",
        *TINY_RUN_OVERRIDES,
    ]
