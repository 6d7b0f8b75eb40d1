"""Bad Teacher (Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023).

The student starts as f and distils from two teachers: on D_r from f itself (the competent teacher),
on D_f from an incompetent teacher with random weights. The deleted pairs end up scored like a
model that never learnt anything, and the retained pairs like f.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import Tensor

from mdrun.errors import MdrunError
from mdrun.methods.base import PairedLossMethod, UnlearningData
from mdrun.methods.registry import METHODS
from mdrun.methods.scrub import output_divergence
from mdrun.models.base import MultimodalModel, PairBatch

log = logging.getLogger(__name__)

INCOMPETENT_TEACHERS = ("reinitialised", "fresh")


def reinitialised_copy(model: MultimodalModel) -> MultimodalModel:
    """Copy `model` and re-draw every submodule that has a reset method from its initialiser.

    NOTE: a parameter held directly by a module without a reset method (in albef_small the [CLS]
    token, the position embeddings and the temperature) keeps f's value.
    """
    copied = copy.deepcopy(model)
    before = {name: parameter.detach().clone() for name, parameter in copied.named_parameters()}
    for module in copied.modules():
        # nn.MultiheadAttention names its reset method `_reset_parameters`.
        reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
        if callable(reset):
            reset()
    unchanged = [name for name, parameter in copied.named_parameters() if torch.equal(parameter, before[name])]
    log.info("bad_teacher: re-initialised the incompetent teacher, %d of %d parameter tensors keep f's values: %s",
             len(unchanged), len(before), ", ".join(unchanged) or "none")
    return copied


@METHODS.register("bad_teacher")
class BadTeacher(PairedLossMethod):
    def __init__(
        self,
        temperature: float = 1.0,
        forget_weight: float = 1.0,
        retain_weight: float = 1.0,
        incompetent_teacher: str = "reinitialised",
        epochs: int = 1,
        **recipe,
    ) -> None:
        super().__init__(epochs=epochs, **recipe)
        if temperature <= 0:
            raise MdrunError(f"Bad Teacher temperature must be above 0, got {temperature}")
        if forget_weight <= 0:
            raise MdrunError(f"Bad Teacher forget_weight must be above 0, got {forget_weight}; without it nothing is unlearned")
        if retain_weight < 0:
            raise MdrunError(f"Bad Teacher retain_weight must be 0 or more, got {retain_weight}")
        if incompetent_teacher not in INCOMPETENT_TEACHERS:
            raise MdrunError(f"unknown incompetent_teacher '{incompetent_teacher}'; valid values: {', '.join(INCOMPETENT_TEACHERS)}")
        self.temperature = temperature
        self.forget_weight = forget_weight
        self.retain_weight = retain_weight
        self.incompetent_teacher_kind = incompetent_teacher
        self.incompetent_teacher: MultimodalModel | None = None

    def build_incompetent_teacher(self, model: MultimodalModel, data: UnlearningData) -> MultimodalModel:
        if self.incompetent_teacher_kind == "fresh":
            if data.fresh_model is None:
                raise MdrunError("Bad Teacher with incompetent_teacher=fresh needs the pre-trained start, but the unlearning data has no fresh_model; use incompetent_teacher=reinitialised")
            teacher = data.fresh_model().to(model.device)
        else:
            teacher = reinitialised_copy(model)
        return teacher.eval().requires_grad_(False)

    def unlearn(self, model: MultimodalModel, data: UnlearningData, seed: int) -> MultimodalModel:
        self.incompetent_teacher = self.build_incompetent_teacher(model, data)
        return super().unlearn(model, data, seed)

    def loss(self, model: MultimodalModel, original: MultimodalModel, forget: PairBatch, retain: PairBatch) -> dict[str, Tensor]:
        terms = {"forget": self.forget_weight * output_divergence(model, self.incompetent_teacher, forget, self.temperature)}
        if self.retain_weight:
            terms["retain"] = self.retain_weight * output_divergence(model, original, retain, self.temperature)
        return terms
