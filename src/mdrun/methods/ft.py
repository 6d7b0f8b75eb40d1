"""FT, fine-tuning: continue training the original model on D_r with its task loss (1 epoch in MultiDelete's runs).

Nothing is approximated. FT forgets D_f only as far as further training on D_r overwrites it, which makes
it the weakest form of unlearning and a baseline for what any targeted method adds.
"""

from __future__ import annotations

import logging

from mdrun.errors import MdrunError
from mdrun.methods.base import UnlearningData, UnlearningMethod
from mdrun.methods.registry import METHODS
from mdrun.models.base import MultimodalModel
from mdrun.training import Recipe, train_on_task

log = logging.getLogger(__name__)


@METHODS.register("ft")
class FineTune(UnlearningMethod):
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
            raise MdrunError(f"FT epochs must be at least 1, got {epochs}; with 0 it would return the original model")
        self.recipe = Recipe(epochs, batch_size, lr, weight_decay, warmup_ratio, grad_clip)

    def unlearn(self, model: MultimodalModel, data: UnlearningData, seed: int) -> MultimodalModel:
        log.info("FT: training on %d D_r pairs for %d epochs", len(data.retain), self.recipe.epochs)
        train_on_task(model, data.inputs, data.retain, self.recipe, seed, desc="unlearn (FT)")
        return model
