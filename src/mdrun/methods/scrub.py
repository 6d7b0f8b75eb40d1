"""SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023).

A student starts as a copy of f and the teacher is f, frozen. SCRUB alternates two phases: a max
phase over D_f pushes the student's outputs away from the teacher's (ascent on their KL divergence),
and a min phase over D_r pulls them back while it also descends the task loss. Max phases run only
in the first `max_epochs` epochs, so that the last min phases repair what the max phases broke on D_r.
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from mdrun.errors import MdrunError
from mdrun.methods.base import UnlearningData, UnlearningMethod
from mdrun.methods.registry import METHODS
from mdrun.models.base import MultimodalModel, PairBatch
from mdrun.training import Recipe, endless_batches, make_optimizer, optimizer_step, shuffled_batches

log = logging.getLogger(__name__)


def kl_to_teacher(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(teacher || student) of the row-wise softmax at `temperature`, averaged over rows."""
    return F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        log_target=True,
        reduction="batchmean",
    )


def output_divergence(student: MultimodalModel, teacher: MultimodalModel, batch: PairBatch, temperature: float) -> Tensor:
    """Distillation divergence between two models' output distributions on a batch of pairs.

    The model interface exposes two distributions: each row and each column of the in-batch
    similarity matrix (image-to-text and text-to-image retrieval), and the matching head's
    matched / not-matched probabilities of each pair. The result is the mean KL(teacher || student)
    of the two similarity directions plus that of the matching head, times temperature**2 as in
    SCRUB's distillation loss, which keeps the gradient scale independent of the temperature.
    """
    student_similarity = student.similarity(student.embed_a(batch.a), student.embed_b(batch.b))
    student_matching = student.match_logits(student.fuse(batch.a, batch.b))
    with torch.no_grad():
        teacher_similarity = teacher.similarity(teacher.embed_a(batch.a), teacher.embed_b(batch.b))
        teacher_matching = teacher.match_logits(teacher.fuse(batch.a, batch.b))

    similarity = (
        kl_to_teacher(student_similarity, teacher_similarity, temperature)
        + kl_to_teacher(student_similarity.T, teacher_similarity.T, temperature)
    ) / 2
    matching = kl_to_teacher(student_matching, teacher_matching, temperature)
    return (similarity + matching) * temperature**2


@METHODS.register("scrub")
class Scrub(UnlearningMethod):
    def __init__(
        self,
        max_epochs: int = 2,
        temperature: float = 4.0,
        task_weight: float = 0.99,
        retain_divergence_weight: float = 0.001,
        min_steps_per_epoch: int | None = None,
        epochs: int = 3,
        batch_size: int = 32,
        lr: float = 1e-4,
        weight_decay: float = 0.02,
        warmup_ratio: float = 0.1,
        grad_clip: float | None = 1.0,
    ) -> None:
        if epochs < 1:
            raise MdrunError(f"SCRUB epochs must be at least 1, got {epochs}")
        if max_epochs < 1:
            raise MdrunError(f"SCRUB max_epochs must be at least 1, got {max_epochs}; without max phases nothing is unlearned")
        if temperature <= 0:
            raise MdrunError(f"SCRUB temperature must be above 0, got {temperature}")
        if task_weight < 0 or retain_divergence_weight < 0:
            raise MdrunError(f"SCRUB weights must be 0 or more, got task_weight={task_weight}, retain_divergence_weight={retain_divergence_weight}")
        if min_steps_per_epoch is not None and min_steps_per_epoch < 1:
            raise MdrunError(f"SCRUB min_steps_per_epoch must be at least 1 or null, got {min_steps_per_epoch}")
        self.max_epochs = max_epochs
        self.temperature = temperature
        self.task_weight = task_weight
        self.retain_divergence_weight = retain_divergence_weight
        self.min_steps_per_epoch = min_steps_per_epoch
        self.recipe = Recipe(epochs, batch_size, lr, weight_decay, warmup_ratio, grad_clip)
        # One (phase, loss) entry per optimiser step, with phase "max" or "min", so the alternation can be checked.
        self.steps: list[tuple[str, float]] = []

    def max_loss(self, student: MultimodalModel, teacher: MultimodalModel, forget: PairBatch) -> Tensor:
        """Negate the student-teacher divergence on a D_f batch, so that descending this loss ascends the divergence."""
        return -output_divergence(student, teacher, forget, self.temperature)

    def min_loss(self, student: MultimodalModel, teacher: MultimodalModel, retain: PairBatch) -> Tensor:
        """Weigh the task loss and the student-teacher divergence on a D_r batch into one loss."""
        loss = self.task_weight * student.task_loss(retain)
        if self.retain_divergence_weight:
            loss = loss + self.retain_divergence_weight * output_divergence(student, teacher, retain, self.temperature)
        return loss

    def unlearn(self, model: MultimodalModel, data: UnlearningData, seed: int) -> MultimodalModel:
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
        student = model
        generator = torch.Generator().manual_seed(seed)
        batch_size = self.recipe.batch_size

        forget_batches = -(-len(data.forget) // batch_size)
        # The paper's min phase is a full pass over D_r. Matching its length to D_f instead keeps
        # SCRUB's cost near that of the other methods, which all scale with |D_f|.
        min_steps = self.min_steps_per_epoch or forget_batches
        # A max_epochs above epochs means a max phase in every epoch.
        total_steps = min(self.max_epochs, self.recipe.epochs) * forget_batches + self.recipe.epochs * min_steps
        # One optimiser for both phases, as in the authors' code.
        optimizer, scheduler = make_optimizer(
            student, self.recipe.lr, self.recipe.weight_decay, total_steps, self.recipe.warmup_ratio
        )
        retain_batches = endless_batches(data.retain, batch_size, generator)
        self.steps = []

        # NOTE: without dropout the student equals the teacher in the first max phase, so the KL
        # gradient there is zero. The max steps then act only after a min phase has moved the student.
        student.train()
        progress = tqdm(total=total_steps, desc="unlearn (SCRUB)", unit="step", leave=False)
        for epoch in range(self.recipe.epochs):
            if epoch < self.max_epochs:
                for forget_captions in shuffled_batches(data.forget, batch_size, generator):
                    self.step("max", self.max_loss(student, teacher, data.inputs.pair_batch(forget_captions)), student, optimizer, scheduler)
                    progress.update()
            for _ in range(min_steps):
                self.step("min", self.min_loss(student, teacher, data.inputs.pair_batch(next(retain_batches))), student, optimizer, scheduler)
                progress.update()
            progress.set_postfix(epoch=epoch + 1, last=f"{self.steps[-1][0]} {self.steps[-1][1]:.4f}")
        progress.close()

        max_steps = sum(phase == "max" for phase, _ in self.steps)
        log.info("scrub: %d max steps on D_f, %d min steps on D_r", max_steps, len(self.steps) - max_steps)
        return student.eval()

    def step(self, phase: str, loss: Tensor, student: MultimodalModel, optimizer, scheduler) -> None:
        optimizer_step(student, loss, optimizer, scheduler, self.recipe.grad_clip)
        self.steps.append((phase, loss.item()))
