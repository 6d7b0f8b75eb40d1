"""ERM-KTP (Lin, Zhang, Chen, Chen and Susilo, "ERM-KTP: Knowledge-Level Machine Unlearning via Knowledge Transfer", CVPR 2023).

Two phases, as in the paper:
- ERM, entanglement-reduced masks: one learnable channel mask over the fused representation h for D_r and
  one for D_f. Each mask must keep enough channels for the original model's matching head to still call
  its pairs matched. The authors' mask loss makes the masks sparse and disjoint: an L1 penalty above a
  density floor plus a penalty on the inner product of the two masks. Channels in the D_f mask but not in
  the D_r mask carry the knowledge to forget.
- KTP, knowledge transfer and prohibition, in the shared paired loop with the original model f as teacher.
  Transfer pulls the student's h and unimodal embeddings towards f's on D_r, with the forget channels
  removed from f's h. Prohibition pushes the student's forget channels away from f's on D_f.

What is approximated, and why:
- The paper learns one mask per class while training the original model, on the last feature maps of a
  CNN. mdrun deletes pairs, not classes, and gets an original model trained without masks, so the two
  masks (D_f and D_r) are fitted afterwards on the frozen original, over the channels of h from `fuse`.
- The masks shape the teacher's targets only. The paper also builds them into the unlearned network and
  zeroes the classifier weights of the forgotten classes, which would need architecture-specific surgery.
- Prohibition is the share of f's forget-channel representation that the student still carries, clipped
  at zero, because a distance to f has zero gradient where the student starts, at f itself.
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from mdrun.errors import MdrunError
from mdrun.methods.base import PairedLossMethod, UnlearningData, distance
from mdrun.methods.registry import METHODS
from mdrun.models.base import MultimodalModel, PairBatch
from mdrun.training import endless_batches

log = logging.getLogger(__name__)


def entanglement_loss(masks: Tensor, density_floor: float, overlap_weight: float) -> Tensor:
    """Compute the authors' mask loss: L1 above `density_floor` of the entries, plus the weighted overlap of the two masks."""
    density = F.relu(masks.sum() - density_floor * masks.numel())
    overlap = (masks[0] * masks[1]).sum()
    return density + overlap_weight * overlap


def fit_masks(
    original: MultimodalModel,
    data: UnlearningData,
    steps: int,
    batch_size: int,
    lr: float,
    density_floor: float,
    overlap_weight: float,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Fit the D_r and D_f channel masks over h on the frozen original model, and return them as (retain, forget)."""
    half = max(1, batch_size // 2)
    forget_batches = endless_batches(data.forget, half, generator)
    retain_batches = endless_batches(data.retain, half, generator)
    with torch.no_grad():
        probe = data.inputs.pair_batch(data.retain[:1])
        width = original.fuse(probe.a, probe.b).shape[-1]

    # Logit 0 is the authors' initial mask value of 0.5.
    logits = torch.zeros(2, width, device=original.device, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        retain = data.inputs.pair_batch(next(retain_batches))
        forget = data.inputs.pair_batch(next(forget_batches))
        with torch.no_grad():
            fused_retain = original.fuse(retain.a, retain.b)
            fused_forget = original.fuse(forget.a, forget.b)

        masks = logits.sigmoid()
        matched_retain = torch.ones(len(retain), dtype=torch.long, device=fused_retain.device)
        matched_forget = torch.ones(len(forget), dtype=torch.long, device=fused_forget.device)
        loss = (
            F.cross_entropy(original.match_logits(fused_retain * masks[0]), matched_retain)
            + F.cross_entropy(original.match_logits(fused_forget * masks[1]), matched_forget)
            + entanglement_loss(masks, density_floor, overlap_weight)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    masks = logits.detach().sigmoid()
    return masks[0], masks[1]


def knowledge_transfer(model: MultimodalModel, original: MultimodalModel, retain: PairBatch, keep: Tensor, kind: str = "mse") -> Tensor:
    """Measure how far the student is from the teacher on D_r: h against f's h times `keep`, plus both unimodal embeddings.

    Minimising it pulls the student towards the teacher. `keep` is 1 on channels to transfer and near 0 on
    channels that carry only D_f knowledge.
    """
    with torch.no_grad():
        target_fused = original.fuse(retain.a, retain.b) * keep
        target_a = original.embed_a(retain.a)
        target_b = original.embed_b(retain.b)
    fused = distance(model.fuse(retain.a, retain.b), target_fused, kind)
    unimodal = distance(model.embed_a(retain.a), target_a, kind) + distance(model.embed_b(retain.b), target_b, kind)
    return fused + unimodal


def knowledge_prohibition(model: MultimodalModel, original: MultimodalModel, forget: PairBatch, forget_mask: Tensor) -> Tensor:
    """Measure the share of the teacher's forget-channel representation that the student still carries on D_f.

    Per pair: the projection of the student's masked h onto the teacher's masked h, divided by the
    teacher's squared norm and clipped at 0, so 1 where the student equals the teacher. Minimising it pushes
    the student away from the teacher; it is linear at the start, where a distance would have no gradient.
    """
    with torch.no_grad():
        target = original.fuse(forget.a, forget.b) * forget_mask
    current = model.fuse(forget.a, forget.b) * forget_mask
    share = (current * target).sum(dim=-1) / (target * target).sum(dim=-1).clamp_min(1e-12)
    return F.relu(share).mean()


@METHODS.register("ermktp")
class ErmKtp(PairedLossMethod):
    def __init__(
        self,
        transfer_weight: float = 1.0,
        prohibition_weight: float = 1.0,
        mask_steps: int = 100,
        mask_lr: float = 0.05,
        density_floor: float = 0.1,
        overlap_weight: float = 0.1,
        distance: str = "mse",
        **recipe,
    ) -> None:
        super().__init__(**recipe)
        if distance not in ("mse", "cosine"):
            raise MdrunError(f"unknown distance '{distance}'; valid values: mse, cosine")
        if transfer_weight <= 0 and prohibition_weight <= 0:
            raise MdrunError("ERM-KTP has both terms switched off; set transfer_weight or prohibition_weight above 0")
        if mask_steps < 0:
            raise MdrunError(f"ERM-KTP mask_steps must be 0 (fixed masks of 0.5) or more, got {mask_steps}")
        self.transfer_weight = transfer_weight
        self.prohibition_weight = prohibition_weight
        self.mask_steps = mask_steps
        self.mask_lr = mask_lr
        self.density_floor = density_floor
        self.overlap_weight = overlap_weight
        self.distance = distance
        # The fitted masks over the channels of h. `unlearn` sets them.
        self.retain_mask: Tensor | None = None
        self.forget_mask: Tensor | None = None
        self.keep: Tensor | None = None

    def unlearn(self, model: MultimodalModel, data: UnlearningData, seed: int) -> MultimodalModel:
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
        generator = torch.Generator().manual_seed(seed)
        self.retain_mask, self.forget_mask = fit_masks(
            teacher, data, self.mask_steps, self.recipe.batch_size, self.mask_lr,
            self.density_floor, self.overlap_weight, generator,
        )
        # Channels that D_f uses and D_r does not are left out of what the student learns on D_r.
        self.keep = 1.0 - self.forget_mask * (1.0 - self.retain_mask)
        log.info(
            "ERM-KTP: masks fitted in %d steps; mean D_r mask %.3f, mean D_f mask %.3f, mean overlap %.3f",
            self.mask_steps, self.retain_mask.mean().item(), self.forget_mask.mean().item(),
            (self.retain_mask * self.forget_mask).mean().item(),
        )
        return super().unlearn(model, data, seed)

    def loss(self, model: MultimodalModel, original: MultimodalModel, forget: PairBatch, retain: PairBatch) -> dict[str, Tensor]:
        terms = {}
        if self.transfer_weight > 0:
            terms["transfer"] = self.transfer_weight * knowledge_transfer(model, original, retain, self.keep, self.distance)
        if self.prohibition_weight > 0:
            terms["prohibition"] = self.prohibition_weight * knowledge_prohibition(model, original, forget, self.forget_mask)
        return terms
