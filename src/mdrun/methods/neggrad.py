"""NegGrad: gradient ascent on the task loss over D_f (1 epoch in MultiDelete's runs).

Nothing is approximated. Ascent has no stopping point of its own, so the epoch count, learning rate and
gradient clipping are what keep it from destroying the retained knowledge as well.
"""

from __future__ import annotations

import logging

import torch
from tqdm import tqdm

from mdrun.errors import MdrunError
from mdrun.methods.base import UnlearningData, UnlearningMethod
from mdrun.methods.registry import METHODS
from mdrun.models.base import MultimodalModel
from mdrun.training import Recipe, make_optimizer, optimizer_step, shuffled_batches

log = logging.getLogger(__name__)


@METHODS.register("neggrad")
class NegGrad(UnlearningMethod):
    def __init__(
        self,
        epochs: int = 1,
        batch_size: int = 32,
        lr: float = 1e-4,
        weight_decay: float = 0.02,
        warmup_ratio: float = 0.1,
        grad_clip: float | None = 1.0,
    ) -> None:
        if epochs < 1:
            raise MdrunError(f"NegGrad epochs must be at least 1, got {epochs}; with 0 it would return the original model")
        self.recipe = Recipe(epochs, batch_size, lr, weight_decay, warmup_ratio, grad_clip)

    def unlearn(self, model: MultimodalModel, data: UnlearningData, seed: int) -> MultimodalModel:
        recipe = self.recipe
        generator = torch.Generator().manual_seed(seed)
        steps_per_epoch = -(-len(data.forget) // recipe.batch_size)
        total_steps = steps_per_epoch * recipe.epochs
        optimizer, scheduler = make_optimizer(model, recipe.lr, recipe.weight_decay, total_steps, recipe.warmup_ratio)
        log.info("NegGrad: gradient ascent on %d D_f pairs for %d epochs (%d steps)", len(data.forget), recipe.epochs, total_steps)

        model.train()
        progress = tqdm(total=total_steps, desc="unlearn (NegGrad)", unit="step", leave=False)
        for _ in range(recipe.epochs):
            for captions in shuffled_batches(data.forget, recipe.batch_size, generator):
                loss = model.task_loss(data.inputs.pair_batch(captions))
                # Minimising the negated loss is gradient ascent on the task loss of D_f.
                optimizer_step(model, -loss, optimizer, scheduler, recipe.grad_clip)
                progress.set_postfix(forget_loss=f"{loss.item():.4f}")
                progress.update()
        progress.close()
        return model.eval()
