"""The method interface and the shared loop of methods that optimise a loss over forget and retain batches."""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from mdrun.errors import MdrunError
from mdrun.models.base import MultimodalModel, PairBatch, SplitInputs
from mdrun.training import Recipe, endless_batches, make_optimizer, optimizer_step, shuffled_batches

log = logging.getLogger(__name__)


@dataclass
class UnlearningData:
    """The data a method may use: the training inputs, D_f and D_r as caption indices, and how f was made.

    `fresh_model` builds the model at its pre-trained start and `recipe` is the original training
    recipe; Retrain needs both, other methods ignore them.
    """

    inputs: SplitInputs
    forget: Tensor
    retain: Tensor
    fresh_model: Callable[[], MultimodalModel] | None = None
    recipe: Recipe | None = None
    val_inputs: SplitInputs | None = None

    def validate(self) -> None:
        if len(self.forget) == 0:
            raise MdrunError("the forget set is empty: there is nothing to unlearn; name at least one training sample")
        if len(self.retain) == 0:
            raise MdrunError("the retain set is empty: the forget set covers every training pair; delete fewer samples")


class UnlearningMethod(ABC):
    """Turns the original model f into an unlearned model f'. Subclasses register under their config name."""

    def __call__(self, model: MultimodalModel, data: UnlearningData, seed: int) -> MultimodalModel:
        data.validate()
        torch.manual_seed(seed)
        return self.unlearn(model, data, seed)

    @abstractmethod
    def unlearn(self, model: MultimodalModel, data: UnlearningData, seed: int) -> MultimodalModel:
        """Return the unlearned model; `model` may be modified in place."""


DISTANCES = ("mse", "squared_l2", "cosine")


def distance(first: Tensor, second: Tensor, kind: str) -> Tensor:
    """Compute the `dist` of MultiDelete's terms, averaged over rows (the last axis is the feature axis).

    mse: mean squared error over every element. squared_l2: squared Euclidean distance of each row,
    so the scale grows with the feature size. cosine: 1 - cosine similarity of each row.
    """
    if kind == "mse":
        return F.mse_loss(first, second)
    if kind == "squared_l2":
        return (first - second).pow(2).sum(dim=-1).mean()
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(first, second, dim=-1)).mean()
    raise MdrunError(f"unknown distance '{kind}'; valid values: {', '.join(DISTANCES)}")


def draw_partners(sample_ids: Tensor, pool_sample_ids: Tensor, generator: torch.Generator) -> Tensor:
    """For each pair, the index of a pool entry from a different sample ID, drawn uniformly.

    A different sample ID means never another caption of the same image, so the drawn pair is unrelated.
    """
    allowed = (sample_ids[:, None] != pool_sample_ids[None, :]).float()
    if bool((allowed.sum(dim=1) == 0).any()):
        raise MdrunError("cannot draw an unrelated partner: every candidate pair shares the sample ID")
    return torch.multinomial(allowed, 1, generator=generator).squeeze(1)


class PairedLossMethod(UnlearningMethod):
    """Steps that each take one D_f batch and one D_r batch, half the batch size each, for `epochs` passes over D_f.

    The original model stays available as a frozen copy; subclasses define `loss` and nothing else.
    """

    def __init__(
        self,
        epochs: int = 5,
        batch_size: int = 32,
        lr: float = 1e-4,
        weight_decay: float = 0.02,
        warmup_ratio: float = 0.1,
        grad_clip: float | None = 1.0,
    ) -> None:
        self.recipe = Recipe(epochs, batch_size, lr, weight_decay, warmup_ratio, grad_clip)

    @abstractmethod
    def loss(self, model: MultimodalModel, original: MultimodalModel, forget: PairBatch, retain: PairBatch) -> dict[str, Tensor]:
        """Compute the named, already weighted loss terms of one step; their sum is minimised."""

    def unlearn(self, model: MultimodalModel, data: UnlearningData, seed: int) -> MultimodalModel:
        original = copy.deepcopy(model).eval().requires_grad_(False)
        self.generator = torch.Generator().manual_seed(seed)
        half = max(1, self.recipe.batch_size // 2)
        steps_per_epoch = -(-len(data.forget) // half)
        total_steps = steps_per_epoch * self.recipe.epochs
        optimizer, scheduler = make_optimizer(
            model, self.recipe.lr, self.recipe.weight_decay, total_steps, self.recipe.warmup_ratio
        )
        retain_batches = endless_batches(data.retain, half, self.generator)

        model.train()
        progress = tqdm(total=total_steps, desc=f"unlearn ({type(self).__name__})", unit="step", leave=False)
        for _ in range(self.recipe.epochs):
            for forget_captions in shuffled_batches(data.forget, half, self.generator):
                forget = data.inputs.pair_batch(forget_captions)
                retain = data.inputs.pair_batch(next(retain_batches))
                terms = self.loss(model, original, forget, retain)
                optimizer_step(model, sum(terms.values()), optimizer, scheduler, self.recipe.grad_clip)
                progress.set_postfix({name: f"{value.item():.4f}" for name, value in terms.items()})
                progress.update()
        progress.close()
        return model.eval()
