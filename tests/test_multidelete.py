"""Each MultiDelete term moves its own target in the right direction on a tiny trained model."""

from __future__ import annotations

import copy

import pytest
import torch

from mdrun.errors import MdrunError
from mdrun.methods import UnlearningData, build_method
from mdrun.methods.base import distance, draw_partners
from mdrun.models.base import index_inputs

FORGET_IMAGES = [0, 1, 2]


def split_pairs(inputs):
    in_forget = torch.isin(inputs.caption_image, torch.tensor(FORGET_IMAGES))
    return torch.nonzero(in_forget).squeeze(1), torch.nonzero(~in_forget).squeeze(1)


def fixed_partners(inputs, forget):
    """Each deleted pair's caption swapped for the first caption of the next image: a different sample."""
    images = inputs.caption_image[forget]
    partner_captions = ((images + 1) % inputs.num_images) * (inputs.num_captions // inputs.num_images)
    return index_inputs(inputs.texts, partner_captions)


def run_multidelete(model, inputs, **params):
    forget, retain = split_pairs(inputs)
    settings = dict(epochs=10, batch_size=8, lr=3e-3, weight_decay=0.0, warmup_ratio=0.0) | params
    return build_method("multidelete", **settings)(copy.deepcopy(model), UnlearningData(inputs, forget, retain), seed=0)


@torch.no_grad()
def fused_gap_to_unrelated(model, original, inputs):
    """dist(h'(a_i, b_i), h(a_i, b_j)) over the deleted pairs, for fixed unrelated partners b_j."""
    forget, _ = split_pairs(inputs)
    batch = inputs.pair_batch(forget)
    return distance(model.fuse(batch.a, batch.b), original.fuse(batch.a, fixed_partners(inputs, forget)), "mse").item()


@torch.no_grad()
def deleted_pair_similarity(model, inputs):
    forget, _ = split_pairs(inputs)
    batch = inputs.pair_batch(forget)
    return model.pair_similarity(batch.a, batch.b).mean().item()


def perturbed(model, scale=0.05, seed=1):
    """A copy of the model with every parameter moved by Gaussian noise."""
    generator = torch.Generator().manual_seed(seed)
    noisy = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in noisy.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    return noisy


def test_fused_decoupling_approaches_unrelated_pair(trained_tiny_model, tiny_inputs):
    before = fused_gap_to_unrelated(trained_tiny_model, trained_tiny_model, tiny_inputs)
    unlearned = run_multidelete(trained_tiny_model, tiny_inputs, decoupling="fused", mkr_weight=0.0, ukr_weight=0.0)
    after = fused_gap_to_unrelated(unlearned, trained_tiny_model, tiny_inputs)
    assert after < 0.5 * before


def test_similarity_decoupling_lowers_deleted_similarity(trained_tiny_model, tiny_inputs):
    before = deleted_pair_similarity(trained_tiny_model, tiny_inputs)
    unlearned = run_multidelete(trained_tiny_model, tiny_inputs, decoupling="similarity", mkr_weight=0.0, ukr_weight=0.0)
    assert deleted_pair_similarity(unlearned, tiny_inputs) < before - 0.1


def test_multimodal_retention_restores_fused_representation(trained_tiny_model, tiny_inputs):
    _, retain = split_pairs(tiny_inputs)
    batch = tiny_inputs.pair_batch(retain)
    start = perturbed(trained_tiny_model)
    with torch.no_grad():
        target = trained_tiny_model.fuse(batch.a, batch.b)
        before = distance(start.fuse(batch.a, batch.b), target, "mse").item()

    # MultiDelete's frozen copy is its input model, so the retention target is passed in as that input.
    method = build_method("multidelete", md_weight=0.0, ukr_weight=0.0, epochs=10, batch_size=8, lr=3e-3, warmup_ratio=0.0)
    model = copy.deepcopy(start)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss = method.multimodal_retention(model, trained_tiny_model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = distance(model.fuse(batch.a, batch.b), target, "mse").item()
    assert after < 0.5 * before


def test_unimodal_retention_restores_embeddings(trained_tiny_model, tiny_inputs):
    _, retain = split_pairs(tiny_inputs)
    batch = tiny_inputs.pair_batch(retain)
    model = perturbed(trained_tiny_model)
    method = build_method("multidelete", md_weight=0.0, mkr_weight=0.0)
    with torch.no_grad():
        before = method.unimodal_retention(model, trained_tiny_model, batch, batch).item()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss = method.unimodal_retention(model, trained_tiny_model, batch, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * before


def test_retention_terms_limit_drift_on_retain(trained_tiny_model, tiny_inputs):
    """With L_MKR and L_UKR on, retained pairs drift less than with L_MD alone."""
    _, retain = split_pairs(tiny_inputs)
    batch = tiny_inputs.pair_batch(retain)

    def retain_drift(model):
        with torch.no_grad():
            return distance(model.fuse(batch.a, batch.b), trained_tiny_model.fuse(batch.a, batch.b), "mse").item()

    decoupling_only = run_multidelete(trained_tiny_model, tiny_inputs, decoupling="both", mkr_weight=0.0, ukr_weight=0.0)
    full = run_multidelete(trained_tiny_model, tiny_inputs, decoupling="both", mkr_weight=5.0, ukr_weight=5.0)
    assert retain_drift(full) < retain_drift(decoupling_only)


def test_partners_never_share_the_image():
    generator = torch.Generator().manual_seed(0)
    sample_ids = torch.tensor([0, 0, 0, 1, 1, 2])
    pool = torch.tensor([0, 0, 0, 1, 1, 2, 5, 6])
    for _ in range(50):
        partners = draw_partners(sample_ids, pool, generator)
        assert not bool((pool[partners] == sample_ids).any())


def test_partners_impossible_when_one_image():
    with pytest.raises(MdrunError, match="unrelated partner"):
        draw_partners(torch.tensor([3, 3]), torch.tensor([3, 3]), torch.Generator())


def test_all_terms_off_is_rejected(trained_tiny_model, tiny_inputs):
    with pytest.raises(MdrunError, match="every term switched off"):
        run_multidelete(trained_tiny_model, tiny_inputs, md_weight=0.0, mkr_weight=0.0, ukr_weight=0.0)


def test_empty_forget_set_stops_before_training(trained_tiny_model, tiny_inputs):
    method = build_method("multidelete")
    empty = torch.empty(0, dtype=torch.long)
    with pytest.raises(MdrunError, match="forget set is empty"):
        method(trained_tiny_model, UnlearningData(tiny_inputs, empty, torch.arange(6)), seed=0)
    with pytest.raises(MdrunError, match="retain set is empty"):
        method(trained_tiny_model, UnlearningData(tiny_inputs, torch.arange(6), empty), seed=0)


@pytest.mark.parametrize("setting,value", [("decoupling", "pairs"), ("distance", "l1"), ("ukr_on", "test")])
def test_invalid_setting_lists_valid_values(setting, value):
    with pytest.raises(MdrunError, match="valid values"):
        build_method("multidelete", **{setting: value})
