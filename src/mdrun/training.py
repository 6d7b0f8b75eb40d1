"""The shared optimisation loop: AdamW with linear warm-up and cosine decay, over shuffled pair batches.

Used to train the original model and the retrained model, and by methods that fine-tune on a task loss.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from mdrun.models.base import MultimodalModel, SplitInputs

log = logging.getLogger(__name__)


@dataclass
class Recipe:
    """An optimisation recipe: passes over the data, batch size and AdamW settings."""

    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.02
    warmup_ratio: float = 0.1
    grad_clip: float | None = 1.0


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, total_steps: int, warmup_ratio: float):
    """AdamW over the trainable parameters with linear warm-up then cosine decay to zero."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    warmup_steps = int(round(warmup_ratio * total_steps))
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup_steps, max(total_steps, 1))
    return optimizer, scheduler


def shuffled_batches(indices: Tensor, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Yield one pass over `indices` in a random order, in batches; the last short batch is kept."""
    order = indices[torch.randperm(len(indices), generator=generator)]
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def endless_batches(indices: Tensor, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Shuffled batches that start a new pass whenever one ends: the retain side of paired steps."""
    while True:
        yield from shuffled_batches(indices, batch_size, generator)


def optimizer_step(model: torch.nn.Module, loss: Tensor, optimizer, scheduler, grad_clip: float | None) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    scheduler.step()


def train_on_task(
    model: MultimodalModel, inputs: SplitInputs, captions: Tensor, recipe: Recipe, seed: int, desc: str,
    ascend: bool = False,
) -> dict[str, float]:
    """Minimise the model's task loss over the pairs of `captions` (caption indices of `inputs`).

    With `ascend`, maximise it instead (gradient ascent); the reported loss is still the task loss.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(captions) // recipe.batch_size)
    optimizer, scheduler = make_optimizer(
        model, recipe.lr, recipe.weight_decay, steps_per_epoch * recipe.epochs, recipe.warmup_ratio
    )

    model.train()
    progress = tqdm(total=steps_per_epoch * recipe.epochs, desc=desc, unit="step", leave=False)
    running = 0.0
    for epoch in range(recipe.epochs):
        for batch_captions in shuffled_batches(captions, recipe.batch_size, generator):
            loss = model.task_loss(inputs.pair_batch(batch_captions))
            optimizer_step(model, -loss if ascend else loss, optimizer, scheduler, recipe.grad_clip)
            running = 0.98 * running + 0.02 * loss.item() if running else loss.item()
            progress.set_postfix(epoch=epoch + 1, loss=f"{running:.3f}")
            progress.update()
    progress.close()
    model.eval()
    return {"pairs_seen": len(captions) * recipe.epochs, "final_loss": running}
