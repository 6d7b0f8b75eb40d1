"""L-CODEC (Mehta, Pal, Singh and Ravi, "Deep Unlearning via Randomized Conditionally Independent Hessians", CVPR 2022).

For each chunk of D_f: select the parameters whose per-sample gradients form a Markov blanket of the loss,
take a Newton removal step on those parameters only, and add Gaussian noise to them.

1. Selection. The chunk's pairs are evaluated with Gaussian noise on their floating-point inputs (the
   authors' input perturbations). For each perturbed pair, the norm of its loss gradient over each parameter
   group is one feature, and the pair's loss is the response. FOCI, the forward selection of Azadkia and
   Chatterjee built on the CODEC conditional-dependence coefficient, adds the group that most increases the
   dependence of the loss on the selected groups, and stops when no group adds any.
2. Removal. With n_r = |D_r|, the selected entries move by (m / n_r) * H^-1 g, where g is the chunk's mean
   loss gradient and m its size: one Newton step towards the minimum of the D_r loss, whose gradient at the
   original minimum is -(m / n_r) g for each removed chunk.
3. Noise. Gaussian noise on the selected entries, sigma = gamma / epsilon * sqrt(2 ln(1.25 / delta)) with
   gamma = 2 M L^2 m^2 / (n^2 lambda^3), the formula and constants of the authors' code (M = 0.25 and L = 1
   for cross-entropy, m = 1 per removal step), n = |D_train| pairs and lambda the Hessian damping.

What is approximated, and why:
- A parameter group is one row (output unit) of a weight matrix, or a whole vector or scalar parameter.
  The authors select conv filters and linear units through activation hooks, which needs layer types; rows
  are the same units without depending on the architecture.
- The Hessian is the diagonal empirical Fisher of D_r (mean squared per-pair gradient over a sample of
  pairs) plus lambda, computed once at the original model. The authors use finite differences of gradients
  saved during training, which mdrun does not keep; a diagonal makes the restricted Newton step a division.
- Per-pair losses are the model's `pair_losses` within the batch, so the contrastive part of one pair's
  gradient depends on the other pairs of its batch.
- The noise carries no certificate, because the loss is not convex and the constants are the authors'
  cross-entropy values, not bounds for this model.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor
from tqdm import tqdm

from mdrun.errors import MdrunError
from mdrun.methods.base import UnlearningData, UnlearningMethod
from mdrun.methods.registry import METHODS
from mdrun.models.base import Inputs, MultimodalModel, PairBatch, SplitInputs
from mdrun.training import shuffled_batches

log = logging.getLogger(__name__)

# The authors' code uses these loss constants for cross-entropy in its noise scale.
HESSIAN_CONSTANT = 0.25
LIPSCHITZ_CONSTANT = 1.0

# Candidate groups scored at once in FOCI, which bounds the size of the (groups, n, n) distance tensor.
FOCI_CHUNK_ELEMENTS = 1 << 22


def lcodec_noise_scale(num_examples: int, damping: float, epsilon: float, delta: float, removed: int = 1) -> float:
    """Compute the standard deviation of the noise added to the selected parameters after a removal step."""
    if num_examples < 1 or damping <= 0 or epsilon <= 0 or not 0 < delta < 1:
        raise MdrunError(
            f"L-CODEC noise needs n >= 1, damping > 0, epsilon > 0 and 0 < delta < 1; "
            f"got n = {num_examples}, damping = {damping}, epsilon = {epsilon}, delta = {delta}"
        )
    gamma = 2 * HESSIAN_CONSTANT * LIPSCHITZ_CONSTANT**2 * removed**2 / (num_examples**2 * damping**3)
    return gamma / epsilon * math.sqrt(2 * math.log(1.25 / delta))


def parameter_groups(parameters: dict[str, Tensor]) -> list[tuple[str, int | None]]:
    """List the selectable groups: (name, row) for each row of a matrix or higher, (name, None) for a vector or scalar."""
    groups: list[tuple[str, int | None]] = []
    for name, parameter in parameters.items():
        if parameter.dim() >= 2:
            groups.extend((name, row) for row in range(parameter.shape[0]))
        else:
            groups.append((name, None))
    return groups


def group_gradient_norms(gradients: list[Tensor]) -> Tensor:
    """Return the L2 norm of a gradient over each parameter group, in `parameter_groups` order."""
    norms = []
    for gradient in gradients:
        if gradient.dim() >= 2:
            norms.append(gradient.flatten(1).norm(dim=1))
        else:
            norms.append(gradient.norm().reshape(1))
    return torch.cat(norms)


def per_pair_gradients(model: MultimodalModel, batch: PairBatch, parameters: dict[str, Tensor]):
    """Yield each pair's loss and its gradient over `parameters`, one backward pass per pair."""
    losses = model.pair_losses(batch)
    values = list(parameters.values())
    for index in range(len(losses)):
        gradients = torch.autograd.grad(losses[index], values, retain_graph=index < len(losses) - 1, allow_unused=True)
        yield losses[index].detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(values, gradients)]


def perturb_inputs(inputs: Inputs, std: float, generator: torch.Generator) -> Inputs:
    """Add Gaussian noise to every floating-point input; token IDs and masks stay as they are."""
    perturbed = {}
    for key, value in inputs.items():
        if value.is_floating_point() and std > 0:
            noise = torch.randn(value.shape, generator=generator, dtype=value.dtype).to(value.device)
            value = value + std * noise
        perturbed[key] = value
    return perturbed


def response_ranks(response: Tensor) -> tuple[Tensor, Tensor]:
    """Return R_i = #{j : y_j <= y_i} and L_i = #{j : y_j >= y_i}, the ranks CODEC is built on."""
    below = (response[None, :] <= response[:, None]).sum(dim=1)
    above = (response[None, :] >= response[:, None]).sum(dim=1)
    return below.double(), above.double()


def codec_dependence(below: Tensor, above: Tensor, base_distances: Tensor, candidates: Tensor) -> Tensor:
    """Compute CODEC's Q_n(Y, X_S + candidate) for each candidate column; larger means the loss depends more on it.

    Q_n = (1/n^2) * sum_i (min(R_i, R_M(i)) - L_i^2 / n), where M(i) is the nearest neighbour of i in the
    features of S plus the candidate. `base_distances` contains the squared distances within S.
    """
    n, count = candidates.shape
    per_chunk = max(1, FOCI_CHUNK_ELEMENTS // (n * n))
    scores = torch.empty(count, dtype=torch.float64)
    diagonal = torch.arange(n)
    for start in range(0, count, per_chunk):
        columns = candidates[:, start : start + per_chunk].T
        distances = base_distances[None] + (columns[:, :, None] - columns[:, None, :]) ** 2
        distances[:, diagonal, diagonal] = math.inf
        nearest = distances.argmin(dim=-1)
        scores[start : start + per_chunk] = (torch.minimum(below[None, :], below[nearest]) - above**2 / n).sum(dim=1) / n**2
    return scores


def foci_select(response: Tensor, features: Tensor, max_selected: int) -> list[int]:
    """Select feature columns by FOCI: greedily add the column that most raises Q_n, stop when none raises it.

    At least one column is returned, so a removal step always has parameters to move.
    """
    # The statistics are small (n by groups), so they run on the CPU whatever device made the gradients.
    features = features.detach().double().cpu()
    response = response.detach().cpu()
    spread = features.std(dim=0)
    usable = spread > 0
    if not bool(usable.any()):
        raise MdrunError("L-CODEC found no parameter group whose per-pair gradient varies across the D_f sample; raise selection_samples or perturbation_std")
    # Standardised columns, so that no group dominates the nearest-neighbour distances by its gradient scale.
    scaled = torch.where(usable, (features - features.mean(dim=0)) / spread.clamp_min(1e-30), torch.zeros_like(features))
    below, above = response_ranks(response.double())

    n = len(response)
    base_distances = torch.zeros(n, n, dtype=torch.float64)
    selected: list[int] = []
    current = 0.0
    while len(selected) < max_selected:
        scores = codec_dependence(below, above, base_distances, scaled)
        scores[~usable] = -math.inf
        scores[selected] = -math.inf
        best = int(scores.argmax())
        improves = float(scores[best]) > current
        if not improves and selected:
            break
        selected.append(best)
        if not improves:
            # No group raises the dependence at all: keep only the best one.
            break
        current = float(scores[best])
        base_distances = base_distances + (scaled[:, best, None] - scaled[None, :, best]) ** 2
    return selected


@METHODS.register("lcodec")
class LCodec(UnlearningMethod):
    def __init__(
        self,
        epochs: int = 1,
        batch_size: int = 128,
        selection_samples: int = 32,
        perturbation_std: float = 0.1,
        max_groups: int = 32,
        fisher_pairs: int = 32,
        damping: float = 0.01,
        epsilon: float = 1.0,
        delta: float = 0.01,
    ) -> None:
        if epochs < 1 or batch_size < 1 or max_groups < 1 or fisher_pairs < 1:
            raise MdrunError(
                f"L-CODEC epochs, batch_size, max_groups and fisher_pairs must be at least 1; "
                f"got {epochs}, {batch_size}, {max_groups}, {fisher_pairs}"
            )
        if selection_samples < 3:
            raise MdrunError(f"L-CODEC needs at least 3 selection_samples for a nearest-neighbour score, got {selection_samples}")
        lcodec_noise_scale(1, damping, epsilon, delta)
        self.epochs = epochs
        self.batch_size = batch_size
        self.selection_samples = selection_samples
        self.perturbation_std = perturbation_std
        self.max_groups = max_groups
        self.fisher_pairs = fisher_pairs
        self.damping = damping
        self.epsilon = epsilon
        self.delta = delta
        # The entries that removal steps moved, by parameter name. `unlearn` fills it.
        self.selected: dict[str, Tensor] = {}

    def diagonal_fisher(self, model: MultimodalModel, inputs: SplitInputs, retain: Tensor, parameters: dict[str, Tensor], generator: torch.Generator) -> list[Tensor]:
        """Compute the mean squared per-pair gradient over a sample of D_r: the diagonal empirical Fisher."""
        sample = retain[torch.randperm(len(retain), generator=generator)[: self.fisher_pairs]]
        fisher = [torch.zeros_like(p) for p in parameters.values()]
        for _, gradients in per_pair_gradients(model, inputs.pair_batch(sample), parameters):
            for total, gradient in zip(fisher, gradients):
                total.add_(gradient.detach() ** 2)
        return [total / len(sample) for total in fisher]

    def select(self, model: MultimodalModel, inputs: SplitInputs, chunk: Tensor, parameters: dict[str, Tensor], generator: torch.Generator) -> list[Tensor]:
        """Return a boolean mask per parameter: the groups FOCI selects for this chunk of D_f."""
        draws = torch.randint(len(chunk), (self.selection_samples,), generator=generator)
        batch = inputs.pair_batch(chunk[draws])
        batch.a = perturb_inputs(batch.a, self.perturbation_std, generator)
        batch.b = perturb_inputs(batch.b, self.perturbation_std, generator)

        losses, features = [], []
        for loss, gradients in per_pair_gradients(model, batch, parameters):
            losses.append(loss)
            features.append(group_gradient_norms(gradients))
        chosen = foci_select(torch.stack(losses), torch.stack(features), self.max_groups)

        groups = parameter_groups(parameters)
        masks = [torch.zeros_like(p, dtype=torch.bool) for p in parameters.values()]
        position = {name: index for index, name in enumerate(parameters)}
        for group in chosen:
            name, row = groups[group]
            if row is None:
                masks[position[name]].fill_(True)
            else:
                masks[position[name]][row] = True
        return masks

    def unlearn(self, model: MultimodalModel, data: UnlearningData, seed: int) -> MultimodalModel:
        generator = torch.Generator().manual_seed(seed)
        parameters = {name: p for name, p in model.named_parameters() if p.requires_grad}
        num_retain = len(data.retain)
        sigma = lcodec_noise_scale(len(data.forget) + num_retain, self.damping, self.epsilon, self.delta)
        self.selected = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in parameters.items()}

        # Evaluation mode: dropout would add noise of its own to the gradients that select and remove.
        model.eval()
        fisher = self.diagonal_fisher(model, data.inputs, data.retain, parameters, generator)
        steps = self.epochs * -(-len(data.forget) // self.batch_size)
        log.info("L-CODEC: %d removal steps over %d D_f pairs, noise sigma %.4g", steps, len(data.forget), sigma)

        progress = tqdm(total=steps, desc="unlearn (L-CODEC)", unit="step", leave=False)
        for _ in range(self.epochs):
            for chunk in shuffled_batches(data.forget, self.batch_size, generator):
                masks = self.select(model, data.inputs, chunk, parameters, generator)
                losses = model.pair_losses(data.inputs.pair_batch(chunk))
                gradients = torch.autograd.grad(losses.mean(), list(parameters.values()), allow_unused=True)
                scale = len(chunk) / num_retain
                with torch.no_grad():
                    for parameter, gradient, curvature, mask, name in zip(parameters.values(), gradients, fisher, masks, parameters):
                        if gradient is None or not bool(mask.any()):
                            continue
                        newton = scale * gradient / (curvature + self.damping)
                        noise = sigma * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype).to(parameter.device)
                        parameter.add_(torch.where(mask, newton + noise, torch.zeros_like(parameter)))
                        self.selected[name] |= mask
                progress.set_postfix(forget_loss=f"{losses.mean().item():.4f}", entries=sum(int(m.sum()) for m in masks))
                progress.update()
        progress.close()

        moved = sum(int(mask.sum()) for mask in self.selected.values())
        total = sum(p.numel() for p in parameters.values())
        log.info("L-CODEC: moved %d of %d trainable entries (%.2f%%)", moved, total, 100.0 * moved / max(total, 1))
        return model
