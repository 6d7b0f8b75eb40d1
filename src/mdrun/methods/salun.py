"""SalUn, saliency unlearning (Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency", ICLR 2024).

Before unlearning, SalUn ranks every weight entry by the magnitude of the forget loss's gradient
over D_f and keeps the top `mask_fraction` of them as the saliency mask. It then runs random
pairing (random relabelling for image-text pairs) with the task loss on D_r, and only the entries
inside the mask may change.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from mdrun.errors import MdrunError
from mdrun.methods.base import UnlearningData
from mdrun.methods.random_pairing import RandomPairing
from mdrun.methods.registry import METHODS
from mdrun.models.base import MultimodalModel, PairBatch

log = logging.getLogger(__name__)


@METHODS.register("salun")
class SalUn(RandomPairing):
    def __init__(self, mask_fraction: float = 0.5, **params) -> None:
        super().__init__(**params)
        if not 0.0 < mask_fraction <= 1.0:
            raise MdrunError(f"SalUn mask_fraction must be in (0, 1], got {mask_fraction}; it is the share of weight entries that may change")
        self.mask_fraction = mask_fraction
        # Parameter name -> bool tensor of the entries that unlearning may change; set by `unlearn`.
        self.mask: dict[str, Tensor] = {}
        self.initial: dict[str, Tensor] = {}

    def forget_gradients(self, model: MultimodalModel, data: UnlearningData) -> dict[str, Tensor]:
        """Sum the task loss's gradient over the D_f batches; only its magnitude is used, so its sign does not matter."""
        parameters = {name: p for name, p in model.named_parameters() if p.requires_grad}
        model.eval()
        model.zero_grad(set_to_none=True)
        for start in range(0, len(data.forget), self.recipe.batch_size):
            batch = data.inputs.pair_batch(data.forget[start : start + self.recipe.batch_size])
            model.task_loss(batch).backward()

        gradients = {}
        for name, parameter in parameters.items():
            # A parameter the task loss never reaches has no gradient, so it ranks as not salient.
            grad = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
            gradients[name] = grad.detach().clone()
        model.zero_grad(set_to_none=True)
        return gradients

    def saliency_mask(self, gradients: dict[str, Tensor]) -> dict[str, Tensor]:
        """Select the `mask_fraction` of entries with the largest gradient magnitude, ranked over all parameters together."""
        magnitudes = torch.cat([grad.abs().flatten() for grad in gradients.values()])
        keep = max(1, round(self.mask_fraction * len(magnitudes)))
        flat_mask = torch.zeros(len(magnitudes), dtype=torch.bool, device=magnitudes.device)
        flat_mask[torch.topk(magnitudes, keep).indices] = True

        mask, start = {}, 0
        for name, grad in gradients.items():
            mask[name] = flat_mask[start : start + grad.numel()].view_as(grad)
            start += grad.numel()
        return mask

    @torch.no_grad()
    def restore_outside_mask(self, model: MultimodalModel) -> None:
        """Reset every entry outside the mask to its value in f.

        The gradient hooks already zero those entries' gradients, but AdamW's decoupled weight decay
        still shrinks them at every step, so they are put back.
        """
        for name, parameter in model.named_parameters():
            if name in self.mask:
                parameter.copy_(torch.where(self.mask[name], parameter, self.initial[name]))

    def unlearn(self, model: MultimodalModel, data: UnlearningData, seed: int) -> MultimodalModel:
        self.mask = self.saliency_mask(self.forget_gradients(model, data))
        self.initial = {name: model.get_parameter(name).detach().clone() for name in self.mask}
        inside = sum(int(entries.sum()) for entries in self.mask.values())
        total = sum(entries.numel() for entries in self.mask.values())
        log.info("salun: saliency mask keeps %d of %d weight entries (%.1f%%)", inside, total, 100.0 * inside / total)

        hooks = [
            model.get_parameter(name).register_hook(lambda grad, entries=entries: grad * entries.to(grad.dtype))
            for name, entries in self.mask.items()
        ]
        try:
            model = super().unlearn(model, data, seed)
        finally:
            for hook in hooks:
                hook.remove()
        self.restore_outside_mask(model)
        self.initial = {}
        return model

    def loss(self, model: MultimodalModel, original: MultimodalModel, forget: PairBatch, retain: PairBatch) -> dict[str, Tensor]:
        # Undo the weight decay of the previous step before this step's forward pass.
        self.restore_outside_mask(model)
        return super().loss(model, original, forget, retain)
