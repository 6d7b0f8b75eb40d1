"""NegGrad: gradient ascent on the task loss over D_f (1 epoch in MultiDelete's runs).

Nothing is approximated. Ascent has no stopping point of its own, so the epoch count, learning rate and
gradient clipping are what keep it from destroying the retained knowledge as well.
"""

from __future__ import annotations

import logging

from mdrun.errors import MdrunError
from mdrun.methods.base import UnlearningData, UnlearningMethod
from mdrun.methods.registry import METHODS
from mdrun.models.base import MultimodalModel
from mdrun.training import Recipe, train_on_task

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
        log.info("NegGrad: gradient ascent on %d D_f pairs for %d epochs", len(data.forget), self.recipe.epochs)
        train_on_task(model, data.inputs, data.forget, self.recipe, seed, desc="unlearn (NegGrad)", ascend=True)
        return model
