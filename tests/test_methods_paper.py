"""MultiDelete's baselines on the tiny model: each does what defines it, rejects empty sets early, and runs end to end."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import make_tiny_model
from mdrun.errors import MdrunError
from mdrun.methods import UnlearningData, build_method
from mdrun.methods.dtd import DescentToDelete, dtd_noise_scale
from mdrun.methods.ermktp import fit_masks, knowledge_prohibition, knowledge_transfer
from mdrun.methods.ft import FineTune
from mdrun.methods.lcodec import LCodec, foci_select
from mdrun.methods.neggrad import NegGrad
from mdrun.methods.retrain import Retrain
from mdrun.training import Recipe, train_on_task

PAPER_METHODS = ["retrain", "ft", "neggrad", "dtd", "lcodec", "ermktp"]

# The pairs of the tiny inputs' first two images (three captions each) form D_f.
FORGET = torch.arange(0, 6)


def split(inputs, **extra) -> UnlearningData:
    retain = torch.arange(len(FORGET), inputs.num_captions)
    return UnlearningData(inputs=inputs, forget=FORGET.clone(), retain=retain, **extra)


def mean_pair_loss(model, inputs, captions) -> float:
    model.eval()
    with torch.no_grad():
        return model.pair_losses(inputs.pair_batch(captions)).mean().item()


def parameter_copy(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# -- NegGrad, FT, Retrain --------------------------------------------------------------------------


def test_neggrad_raises_forget_loss(trained_tiny_model, tiny_inputs):
    data = split(tiny_inputs)
    before = mean_pair_loss(trained_tiny_model, tiny_inputs, data.forget)

    unlearned = NegGrad(epochs=3, batch_size=6, lr=1e-3)(trained_tiny_model, data, seed=0)

    after = mean_pair_loss(unlearned, tiny_inputs, data.forget)
    assert after > before + 0.1, f"D_f loss went from {before:.3f} to {after:.3f}"


def test_ft_lowers_retain_loss(tiny_model, tiny_inputs):
    data = split(tiny_inputs)
    before = mean_pair_loss(tiny_model, tiny_inputs, data.retain)

    unlearned = FineTune(epochs=5, batch_size=12, lr=3e-3)(tiny_model, data, seed=0)

    after = mean_pair_loss(unlearned, tiny_inputs, data.retain)
    assert after < before - 0.1, f"D_r loss went from {before:.3f} to {after:.3f}"


def test_retrain_equals_fresh_training_on_retain(trained_tiny_model, tiny_inputs):
    recipe = Recipe(epochs=3, batch_size=12, lr=3e-3, weight_decay=0.0)
    data = split(tiny_inputs, fresh_model=lambda: make_tiny_model(tiny_inputs), recipe=recipe)
    original = parameter_copy(trained_tiny_model)

    retrained = Retrain()(trained_tiny_model, data, seed=3)

    expected = make_tiny_model(tiny_inputs)
    train_on_task(expected, tiny_inputs, data.retain, recipe, seed=3, desc="expected")
    for name, parameter in expected.named_parameters():
        assert torch.equal(dict(retrained.named_parameters())[name], parameter), name
    assert retrained is not trained_tiny_model
    assert not torch.equal(dict(retrained.named_parameters())["itm_head.weight"], original["itm_head.weight"])


def test_retrain_without_fresh_model_fails(tiny_model, tiny_inputs):
    with pytest.raises(MdrunError, match="fresh_model"):
        Retrain()(tiny_model, split(tiny_inputs), seed=0)


# -- DtD ------------------------------------------------------------------------------------------


def test_dtd_noise_scale_matches_hand_computation():
    # n = 100, wd = 0.1, epsilon = 5, delta = 1e-4, T = 10:
    # L = 1.1, beta = 3.9, m = 0.1, gamma = (3.9 - 0.1) / (3.9 + 0.1) = 0.95, gamma^10 = 0.5987369392
    # ln(1/delta) = 9.2103403720; sqrt(14.2103403720) - sqrt(9.2103403720) = 3.7696605115 - 3.0348542588 = 0.7348062527
    # numerator = 4 * sqrt(2) * 1.1 * 0.5987369392 = 3.7256643590
    # denominator = 0.1 * 100 * (1 - 0.5987369392) * 0.7348062527 = 2.9485060604
    # sigma = 3.7256643590 / 2.9485060604 = 1.2635769718
    assert dtd_noise_scale(100, 0.1, 5.0, 1e-4, 10) == pytest.approx(1.2635769718, rel=1e-9)


def test_dtd_noise_scale_rejects_invalid_constants():
    with pytest.raises(MdrunError, match="weight_decay"):
        dtd_noise_scale(100, 0.0, 5.0, 1e-4, 10)
    with pytest.raises(MdrunError, match="iteration"):
        dtd_noise_scale(100, 0.1, 5.0, 1e-4, 0)


def test_dtd_noise_everywhere_at_theorem_scale(trained_tiny_model, tiny_inputs):
    data = split(tiny_inputs)
    method = DescentToDelete(epochs=0, iterations=400)
    sigma = dtd_noise_scale(len(data.retain), 0.02, 5.0, 1.0 / len(data.retain) ** 2, 400)
    before = parameter_copy(trained_tiny_model)

    unlearned = method(trained_tiny_model, data, seed=0)

    differences = []
    for name, parameter in unlearned.named_parameters():
        difference = parameter.detach() - before[name]
        assert bool((difference != 0).all()), f"{name} has entries without noise"
        differences.append(difference.flatten())
    differences = torch.cat(differences)
    assert differences.std().item() == pytest.approx(sigma, rel=0.03)
    assert abs(differences.mean().item()) < 0.02 * sigma


def test_dtd_without_any_iteration_fails_first(tiny_model, tiny_inputs):
    before = parameter_copy(tiny_model)
    with pytest.raises(MdrunError, match="iterations"):
        DescentToDelete(epochs=0)(tiny_model, split(tiny_inputs), seed=0)
    for name, parameter in tiny_model.named_parameters():
        assert torch.equal(parameter, before[name]), name


# -- L-CODEC --------------------------------------------------------------------------------------


def test_foci_selects_informative_feature():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(60, 20, generator=generator)
    response = features[:, 7] ** 2 + 0.01 * torch.randn(60, generator=generator)

    selected = foci_select(response, features, max_selected=5)

    assert selected[0] == 7


def test_lcodec_changes_only_selected_parameters(trained_tiny_model, tiny_inputs):
    method = LCodec(batch_size=3)
    before = parameter_copy(trained_tiny_model)

    unlearned = method(trained_tiny_model, split(tiny_inputs), seed=0)

    changed_total, selected_total, total = 0, 0, 0
    for name, parameter in unlearned.named_parameters():
        changed = parameter.detach() != before[name]
        selected = method.selected[name]
        assert not bool((changed & ~selected).any()), f"{name} changed outside the selected groups"
        changed_total += int(changed.sum())
        selected_total += int(selected.sum())
        total += parameter.numel()
    assert changed_total > 0
    assert selected_total < 0.2 * total, f"{selected_total} of {total} entries selected"


# -- ERM-KTP --------------------------------------------------------------------------------------


def fused_distance(student, teacher, batch) -> float:
    with torch.no_grad():
        return F.mse_loss(student.fuse(batch.a, batch.b), teacher.fuse(batch.a, batch.b)).item()


def minimise(student, objective, steps: int = 20, lr: float = 1e-3) -> None:
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    for _ in range(steps):
        loss = objective()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_ermktp_transfer_pulls_student_to_teacher(trained_tiny_model, tiny_inputs):
    teacher = copy.deepcopy(trained_tiny_model).eval().requires_grad_(False)
    student = copy.deepcopy(trained_tiny_model).eval()
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    retain = tiny_inputs.pair_batch(split(tiny_inputs).retain)
    keep = torch.ones(teacher.fuse(retain.a, retain.b).shape[-1])
    before = fused_distance(student, teacher, retain)

    minimise(student, lambda: knowledge_transfer(student, teacher, retain, keep))

    after = fused_distance(student, teacher, retain)
    assert after < before, f"D_r distance to the teacher went from {before:.4f} to {after:.4f}"


def test_ermktp_prohibition_pushes_student_from_teacher(trained_tiny_model, tiny_inputs):
    teacher = copy.deepcopy(trained_tiny_model).eval().requires_grad_(False)
    student = copy.deepcopy(trained_tiny_model).eval()
    forget = tiny_inputs.pair_batch(FORGET)
    forget_mask = torch.ones(teacher.fuse(forget.a, forget.b).shape[-1])
    share_before = knowledge_prohibition(student, teacher, forget, forget_mask).item()

    minimise(student, lambda: knowledge_prohibition(student, teacher, forget, forget_mask))

    share_after = knowledge_prohibition(student, teacher, forget, forget_mask).item()
    assert share_before == pytest.approx(1.0)
    assert share_after < share_before
    assert fused_distance(student, teacher, forget) > 1e-3


def test_ermktp_masks_are_sparse_and_disjoint(trained_tiny_model, tiny_inputs):
    teacher = copy.deepcopy(trained_tiny_model).eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(0)

    retain_mask, forget_mask = fit_masks(teacher, split(tiny_inputs), 100, 12, 0.05, 0.1, 0.1, generator)

    # Both masks start at 0.5 everywhere, so the overlap starts at 0.25 per channel.
    assert (retain_mask * forget_mask).mean().item() < 0.1
    assert torch.cat([retain_mask, forget_mask]).mean().item() < 0.2


# -- every method ---------------------------------------------------------------------------------


@pytest.mark.parametrize("empty_set", ["forget", "retain"])
@pytest.mark.parametrize("name", PAPER_METHODS)
def test_empty_set_rejected_before_training(name, empty_set, tiny_model, tiny_inputs):
    fresh_model_calls = []

    def fresh_model():
        fresh_model_calls.append(1)
        return make_tiny_model(tiny_inputs)

    data = split(tiny_inputs, fresh_model=fresh_model, recipe=Recipe(epochs=1, batch_size=12))
    setattr(data, empty_set, torch.empty(0, dtype=torch.long))
    before = parameter_copy(tiny_model)

    with pytest.raises(MdrunError, match=f"the {empty_set} set is empty"):
        build_method(name)(tiny_model, data, seed=0)

    assert not fresh_model_calls
    for parameter_name, parameter in tiny_model.named_parameters():
        assert torch.equal(parameter, before[parameter_name]), parameter_name


def test_every_method_runs_end_to_end(tiny_run_overrides, tmp_path):
    # One sweep process for all six: the features, original and retrained models are made once, then reused.
    command = [sys.executable, "-m", "mdrun", "-m", f"method={','.join(PAPER_METHODS)}", *tiny_run_overrides]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    for name in PAPER_METHODS:
        path = tmp_path / "outputs" / "runs" / "scenes" / "albef_small" / name / "size6-seed42" / "summary.json"
        assert path.is_file(), f"{name} wrote no summary; output tail: {result.stderr[-2000:]}"
        summary = json.loads(path.read_text())
        assert summary["status"].get("unlearn") == "done", f"{name}: {summary['status']}"
        assert "deletion_auc/similarity" in summary["models"]["unlearned"], f"{name}: {sorted(summary['models'])}"
