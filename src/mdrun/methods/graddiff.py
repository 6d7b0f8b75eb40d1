"""GradDiff, gradient difference (Liu et al., "Continual Learning and Private Unlearning", CoLLAs 2022).

Each step ascends the task loss on a D_f batch and descends it on a D_r batch. It is NegGrad plus a
retain term that keeps the model accurate on the pairs it retains.
"""

from __future__ import annotations

from torch import Tensor

from mdrun.errors import MdrunError
from mdrun.methods.base import PairedLossMethod
from mdrun.methods.registry import METHODS
from mdrun.models.base import MultimodalModel, PairBatch


@METHODS.register("graddiff")
class GradDiff(PairedLossMethod):
    def __init__(self, forget_weight: float = 1.0, retain_weight: float = 1.0, **recipe) -> None:
        super().__init__(**recipe)
        if forget_weight <= 0:
            raise MdrunError(f"GradDiff forget_weight must be above 0, got {forget_weight}; without it nothing is unlearned")
        if retain_weight < 0:
            raise MdrunError(f"GradDiff retain_weight must be 0 or more, got {retain_weight}")
        self.forget_weight = forget_weight
        self.retain_weight = retain_weight

    def loss(self, model: MultimodalModel, original: MultimodalModel, forget: PairBatch, retain: PairBatch) -> dict[str, Tensor]:
        # The minus sign turns the descent of the shared loop into ascent on D_f.
        terms = {"forget": -self.forget_weight * model.task_loss(forget)}
        if self.retain_weight:
            terms["retain"] = self.retain_weight * model.task_loss(retain)
        return terms
