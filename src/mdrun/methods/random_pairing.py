"""Random pairing: random relabelling (Graves et al., "Amnesiac Machine Learning", AAAI 2021) for pairs.

A classifier unlearns a sample by training on it under a random wrong label. For a matching model the
label of an image is its caption, so each deleted image is trained as matched with a caption of
another image, drawn anew at every step, while the task loss on D_r keeps the other pairs intact.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mdrun.errors import MdrunError
from mdrun.methods.base import PairedLossMethod, UnlearningData, draw_partners
from mdrun.methods.registry import METHODS
from mdrun.models.base import MultimodalModel, PairBatch, concat_inputs, index_inputs


@METHODS.register("random_pairing")
class RandomPairing(PairedLossMethod):
    def __init__(self, forget_weight: float = 1.0, retain_weight: float = 1.0, **recipe) -> None:
        super().__init__(**recipe)
        if forget_weight <= 0:
            raise MdrunError(f"{type(self).__name__} forget_weight must be above 0, got {forget_weight}; without it nothing is unlearned")
        if retain_weight < 0:
            raise MdrunError(f"{type(self).__name__} retain_weight must be 0 or more, got {retain_weight}")
        self.forget_weight = forget_weight
        self.retain_weight = retain_weight
        # Per step: the sample ID of each deleted pair and of the caption it was trained to match.
        self.drawn_partners: list[tuple[Tensor, Tensor]] = []

    def unlearn(self, model: MultimodalModel, data: UnlearningData, seed: int) -> MultimodalModel:
        self.drawn_partners = []
        return super().unlearn(model, data, seed)

    def random_pairs(self, forget: PairBatch, retain: PairBatch) -> tuple[PairBatch, Tensor]:
        """Pair each deleted image with a caption of another sample from either batch.

        Returns the new pairs, labelled with the deleted image's sample ID so that the task loss
        counts them as matched, and the sample ID each drawn caption belongs to.
        """
        pool = concat_inputs(forget.b, retain.b)
        pool_ids = torch.cat([forget.sample_ids, retain.sample_ids])
        partners = draw_partners(forget.sample_ids, pool_ids, self.generator)
        return forget.with_b(index_inputs(pool, partners)), pool_ids[partners]

    def loss(self, model: MultimodalModel, original: MultimodalModel, forget: PairBatch, retain: PairBatch) -> dict[str, Tensor]:
        relabelled, partner_ids = self.random_pairs(forget, retain)
        self.drawn_partners.append((forget.sample_ids.clone(), partner_ids))
        terms = {"forget": self.forget_weight * model.task_loss(relabelled)}
        if self.retain_weight:
            terms["retain"] = self.retain_weight * model.task_loss(retain)
        return terms
