"""Retrain: the original recipe from the pre-trained start on D_r only, the gold standard of unlearning.

Nothing is approximated. This is exact unlearning at the full cost of training, and the reference that
every other method tries to match at a fraction of that cost.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from mdrun.errors import MdrunError
from mdrun.methods.base import UnlearningData, UnlearningMethod
from mdrun.methods.registry import METHODS
from mdrun.models.base import MultimodalModel
from mdrun.training import train_on_task

log = logging.getLogger(__name__)


@METHODS.register("retrain")
class Retrain(UnlearningMethod):
    """Train `data.fresh_model()` with `data.recipe` on D_r, ignoring the original model."""

    def __init__(self, epochs: int | None = None) -> None:
        if epochs is not None and epochs < 1:
            raise MdrunError(f"Retrain epochs must be at least 1 or null (the original recipe's), got {epochs}")
        self.epochs = epochs

    def unlearn(self, model: MultimodalModel, data: UnlearningData, seed: int) -> MultimodalModel:
        if data.fresh_model is None or data.recipe is None:
            raise MdrunError(
                "Retrain needs the pre-trained start and the original recipe, but UnlearningData.fresh_model "
                "or UnlearningData.recipe is missing; build the data with both"
            )
        recipe = data.recipe if self.epochs is None else replace(data.recipe, epochs=self.epochs)
        retrained = data.fresh_model()
        log.info("Retrain: training from the pre-trained start on %d D_r pairs for %d epochs", len(data.retain), recipe.epochs)
        train_on_task(retrained, data.inputs, data.retain, recipe, seed, desc="unlearn (Retrain)")
        return retrained
