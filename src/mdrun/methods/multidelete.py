"""MultiDelete (Cheng and Amiri, "MultiDelete for Multimodal Machine Unlearning", ECCV 2024).

Three terms, each switchable by setting its weight to zero (the ablation):
- L_MD, modality decoupling, on D_f: the unlearned model should represent a deleted pair the way the
  original represents an unrelated pair. `fused` form: dist(h'(a_i, b_i), h(a_i, b_j)); `similarity`
  form (the authors' code for retrieval): dist(S'(a, b), S(a, b_partner)) over the in-batch matrix of
  cosine similarities, row-wise in both directions. `auto` picks `similarity` for retrieval and `fused` otherwise.
- L_MKR, multimodal knowledge retention, on D_r: dist(h'(a, b), h(a, b)).
- L_UKR, unimodal knowledge retention: dist(g_a'(a), g_a(a)) + dist(g_b'(b), g_b(b)) on D_r, or the
  authors' image-only variant on D_f (`ukr_on: forget_images`).
Partners b_j always come from another sample ID, never another caption of the same image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mdrun.errors import MdrunError
from mdrun.methods.base import DISTANCES, PairedLossMethod, distance, draw_partners
from mdrun.methods.registry import METHODS
from mdrun.models.base import MultimodalModel, PairBatch, concat_inputs, index_inputs

DECOUPLING_FORMS = ("auto", "similarity", "fused", "both")
UKR_SETS = ("retain", "forget_images")


@METHODS.register("multidelete")
class MultiDelete(PairedLossMethod):
    def __init__(
        self,
        md_weight: float = 1.0,
        mkr_weight: float = 1.0,
        ukr_weight: float = 1.0,
        distance: str = "mse",
        decoupling: str = "auto",
        ukr_on: str = "retain",
        **recipe,
    ) -> None:
        super().__init__(**recipe)
        if decoupling not in DECOUPLING_FORMS:
            raise MdrunError(f"unknown decoupling form '{decoupling}'; valid values: {', '.join(DECOUPLING_FORMS)}")
        if ukr_on not in UKR_SETS:
            raise MdrunError(f"unknown ukr_on '{ukr_on}'; valid values: {', '.join(UKR_SETS)}")
        if distance not in DISTANCES:
            raise MdrunError(f"unknown distance '{distance}'; valid values: {', '.join(DISTANCES)}")
        self.weights = {"md": md_weight, "mkr": mkr_weight, "ukr": ukr_weight}
        self.distance = distance
        self.decoupling = decoupling
        self.ukr_on = ukr_on

    def decoupling_forms(self, model: MultimodalModel) -> set[str]:
        if self.decoupling == "auto":
            return {"similarity"} if model.task == "retrieval" else {"fused"}
        if self.decoupling == "both":
            return {"similarity", "fused"}
        return {self.decoupling}

    def unrelated_b(self, forget: PairBatch, retain: PairBatch):
        """For each deleted pair, the b-side of a pair from another sample, drawn from both batches."""
        pool = concat_inputs(forget.b, retain.b)
        pool_ids = torch.cat([forget.sample_ids, retain.sample_ids])
        return index_inputs(pool, draw_partners(forget.sample_ids, pool_ids, self.generator))

    def modality_decoupling(self, model: MultimodalModel, original: MultimodalModel, forget: PairBatch, partner_b) -> Tensor:
        loss = torch.zeros(())
        forms = self.decoupling_forms(model)
        if "similarity" in forms:
            # Cosine similarities, not the temperature-scaled logits: at 1/temperature (about 14 to 30)
            # L_MD would outweigh the retention terms by orders of magnitude at equal weights.
            current = model.embed_a(forget.a) @ model.embed_b(forget.b).T
            with torch.no_grad():
                target = original.embed_a(forget.a) @ original.embed_b(partner_b).T
            loss = loss + distance(current, target, self.distance) + distance(current.T, target.T, self.distance)
        if "fused" in forms:
            current = model.fuse(forget.a, forget.b)
            with torch.no_grad():
                target = original.fuse(forget.a, partner_b)
            loss = loss + distance(current, target, self.distance)
        return loss

    def multimodal_retention(self, model: MultimodalModel, original: MultimodalModel, retain: PairBatch) -> Tensor:
        with torch.no_grad():
            target = original.fuse(retain.a, retain.b)
        return distance(model.fuse(retain.a, retain.b), target, self.distance)

    def unimodal_retention(self, model: MultimodalModel, original: MultimodalModel, forget: PairBatch, retain: PairBatch) -> Tensor:
        if self.ukr_on == "forget_images":
            with torch.no_grad():
                target = original.embed_a(forget.a)
            return distance(model.embed_a(forget.a), target, self.distance)
        with torch.no_grad():
            target_a, target_b = original.embed_a(retain.a), original.embed_b(retain.b)
        return distance(model.embed_a(retain.a), target_a, self.distance) + distance(model.embed_b(retain.b), target_b, self.distance)

    def loss(self, model: MultimodalModel, original: MultimodalModel, forget: PairBatch, retain: PairBatch) -> dict[str, Tensor]:
        terms = {}
        if self.weights["md"]:
            partner_b = self.unrelated_b(forget, retain)
            terms["md"] = self.weights["md"] * self.modality_decoupling(model, original, forget, partner_b)
        if self.weights["mkr"]:
            terms["mkr"] = self.weights["mkr"] * self.multimodal_retention(model, original, retain)
        if self.weights["ukr"]:
            terms["ukr"] = self.weights["ukr"] * self.unimodal_retention(model, original, forget, retain)
        if not terms:
            raise MdrunError("MultiDelete has every term switched off; set at least one of md_weight, mkr_weight, ukr_weight above 0")
        return terms
