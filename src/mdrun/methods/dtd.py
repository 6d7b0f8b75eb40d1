"""Descent-to-Delete (Neel, Roth and Sharifi-Malvajerdi, "Descent-to-Delete: Gradient-Based Methods for Machine Unlearning", ALT 2021).

The published update: a few gradient-descent steps on the data left after the deletion, started from the
current model, then Gaussian noise on every parameter. The noise scale is the one the authors' public code
computes for their theorem on strongly convex, smooth losses (the code cites Theorem 3.1 of arXiv 2007.02923):

    gamma = (beta - m) / (beta + m)
    sigma = 4 * sqrt(2) * L * gamma**T / (m * n * (1 - gamma**T) * (sqrt(ln(1/delta) + epsilon) - sqrt(ln(1/delta))))

with Lipschitz constant L = 1 + wd, smoothness beta = 4 - wd and strong convexity m = wd, where wd is the
weight decay. These constants, epsilon = 5 and delta = 1/n^2 are those of MultiDelete's authors (their
GNNDelete code), which count n as the number of pairs left after the deletion, |D_r|.

What is approximated, and why:
- The loss of a transformer is neither convex nor smooth, so the constants are not true bounds and the
  noise carries no certificate here. This is the point of the baseline: certified noise calibrated for a
  convex model, applied to a deep one.
- The descent part takes mini-batch AdamW steps on D_r instead of full-batch gradient descent with step
  size 2 / (beta + m), because one full-batch step over D_r costs a whole epoch. T is the number of steps
  taken, capped by `max_steps` so that the cost stays near MultiDelete's.
"""

from __future__ import annotations

import logging
import math

import torch
from tqdm import tqdm

from mdrun.errors import MdrunError
from mdrun.methods.base import UnlearningData, UnlearningMethod
from mdrun.methods.registry import METHODS
from mdrun.models.base import MultimodalModel
from mdrun.training import Recipe, endless_batches, make_optimizer, optimizer_step

log = logging.getLogger(__name__)


def dtd_noise_scale(num_examples: int, weight_decay: float, epsilon: float, delta: float, iterations: int) -> float:
    """Compute the standard deviation of Descent-to-Delete's Gaussian noise with the authors' loss constants.

    `num_examples` is n, `iterations` is T, the gradient steps taken since the last published model.
    A larger T or n gives less noise; a smaller epsilon or delta gives more.
    """
    if num_examples < 1:
        raise MdrunError(f"DtD needs at least one training example, got n = {num_examples}")
    if not 0 < weight_decay < 2:
        raise MdrunError(f"DtD needs 0 < weight_decay < 2 (strong convexity m = wd, smoothness 4 - wd > m), got {weight_decay}")
    if epsilon <= 0:
        raise MdrunError(f"DtD epsilon must be positive, got {epsilon}")
    if not 0 < delta < 1:
        raise MdrunError(f"DtD delta must lie in (0, 1), got {delta}")
    if iterations < 1:
        raise MdrunError(f"DtD needs at least one gradient iteration T for its noise scale, got {iterations}")

    lipschitz = 1.0 + weight_decay
    smoothness = 4.0 - weight_decay
    strong_convexity = weight_decay
    gamma = (smoothness - strong_convexity) / (smoothness + strong_convexity)
    contraction = gamma**iterations

    log_inverse_delta = math.log(1.0 / delta)
    privacy_gap = math.sqrt(log_inverse_delta + epsilon) - math.sqrt(log_inverse_delta)
    numerator = 4.0 * math.sqrt(2.0) * lipschitz * contraction
    denominator = strong_convexity * num_examples * (1.0 - contraction) * privacy_gap
    return numerator / denominator


@METHODS.register("dtd")
class DescentToDelete(UnlearningMethod):
    def __init__(
        self,
        epsilon: float = 5.0,
        delta: float | None = None,
        iterations: int | None = None,
        epochs: int = 1,
        max_steps: int | None = 60,
        batch_size: int = 32,
        lr: float = 1e-4,
        weight_decay: float = 0.02,
        warmup_ratio: float = 0.1,
        grad_clip: float | None = 1.0,
    ) -> None:
        if epochs < 0:
            raise MdrunError(f"DtD epochs must be 0 (noise only) or more, got {epochs}")
        if max_steps is not None and max_steps < 0:
            raise MdrunError(f"DtD max_steps must be 0 or more, or null for no cap, got {max_steps}")
        if not 0 < weight_decay < 2:
            raise MdrunError(f"DtD needs 0 < weight_decay < 2 (strong convexity m = wd, smoothness 4 - wd > m), got {weight_decay}")
        self.epsilon = epsilon
        self.delta = delta
        self.iterations = iterations
        self.max_steps = max_steps
        self.recipe = Recipe(epochs, batch_size, lr, weight_decay, warmup_ratio, grad_clip)

    def descent_steps(self, data: UnlearningData) -> int:
        steps = self.recipe.epochs * -(-len(data.retain) // self.recipe.batch_size)
        return steps if self.max_steps is None else min(steps, self.max_steps)

    def noise_scale(self, data: UnlearningData) -> tuple[float, int]:
        """Compute the noise standard deviation for this D_r, and return it with the T it assumes."""
        iterations = self.iterations if self.iterations is not None else self.descent_steps(data)
        if iterations < 1:
            raise MdrunError("DtD takes no descent steps with epochs 0 or max_steps 0, so set `iterations` (T of the noise scale) to at least 1")
        num_examples = len(data.retain)
        delta = self.delta if self.delta is not None else 1.0 / num_examples**2
        return dtd_noise_scale(num_examples, self.recipe.weight_decay, self.epsilon, delta, iterations), iterations

    def unlearn(self, model: MultimodalModel, data: UnlearningData, seed: int) -> MultimodalModel:
        # Computed first, so that a setting without a valid noise scale fails before any training.
        sigma, iterations = self.noise_scale(data)

        steps = self.descent_steps(data)
        if steps:
            self.descend(model, data, steps, seed)

        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.requires_grad:
                    noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                    parameter.add_(noise.to(parameter.device) * sigma)
        log.info("DtD: added Gaussian noise with sigma %.4g (n = %d, T = %d, epsilon = %g)", sigma, len(data.retain), iterations, self.epsilon)
        return model.eval()

    def descend(self, model: MultimodalModel, data: UnlearningData, steps: int, seed: int) -> None:
        """Take `steps` AdamW steps on the task loss of D_r batches, the descent part of the update."""
        recipe = self.recipe
        generator = torch.Generator().manual_seed(seed)
        optimizer, scheduler = make_optimizer(model, recipe.lr, recipe.weight_decay, steps, recipe.warmup_ratio)
        batches = endless_batches(data.retain, recipe.batch_size, generator)
        log.info("DtD: %d descent steps on %d D_r pairs", steps, len(data.retain))

        model.train()
        progress = tqdm(range(steps), desc="unlearn (DtD descent)", unit="step", leave=False)
        for _ in progress:
            loss = model.task_loss(data.inputs.pair_batch(next(batches)))
            optimizer_step(model, loss, optimizer, scheduler, recipe.grad_clip)
            progress.set_postfix(retain_loss=f"{loss.item():.4f}")
        progress.close()
