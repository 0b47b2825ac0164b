"""Magnitude, Wanda and SparseGPT: the sparsity asked for, N:M patterns, and the published
ordering of reconstruction error on correlated calibration inputs."""
from __future__ import annotations

import copy

import pytest
import torch

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm import prune, text_data
from gemini_core.kinds.llm.calibrate import linear_layers
from tests.engine.test_llm_quantize import correlated_inputs, hessian, output_error


def test_unstructured_mask_prunes_half_of_every_row():
    mask = prune.mask_from_scores(torch.rand(8, 64), 0.5, 0, 0)
    assert (mask.sum(1) == 32).all()


def test_two_of_four_pattern_holds_in_every_group():
    w = prune.sparsegpt(torch.randn(16, 64), hessian(correlated_inputs()), 0.5, 2, 4)
    assert ((w.reshape(16, 16, 4) == 0).sum(-1) == 2).all()


def test_wanda_keeps_weights_on_loud_inputs():
    w = torch.ones(4, 8)
    norms = torch.tensor([100.0, 1, 1, 1, 1, 1, 1, 100])
    mask = prune.mask_from_scores(w.abs() * norms, 0.5, 0, 0)
    assert not mask[:, 0].any() and not mask[:, 7].any()


def test_sparsegpt_and_wanda_reconstruct_better_than_magnitude():
    x = correlated_inputs()
    w = torch.randn(32, 64)
    mag = w.masked_fill(prune.mask_from_scores(w.abs(), 0.5, 0, 0), 0)
    norms = x.pow(2).sum(0).sqrt()
    wanda = w.masked_fill(prune.mask_from_scores(w.abs() * norms, 0.5, 0, 0), 0)
    sgpt = prune.sparsegpt(w, hessian(x), 0.5)
    errors = [output_error(v, w, x) for v in (sgpt, wanda, mag)]
    assert errors[0] < errors[1] < errors[2]
    assert float((sgpt == 0).float().mean()) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("method", prune.METHODS)
@pytest.mark.parametrize("pattern", [None, "2:4"])
def test_prune_model_reaches_the_sparsity(tiny_lm, method, pattern):
    calib = text_data.calibration_batch(tiny_lm.tokenizer, text_data.load_split(), 2, 32)
    model = copy.deepcopy(tiny_lm.model)
    record = prune.prune_model(model, method, 0.5, pattern, calib_ids=calib)
    assert record["sparsity"] == pytest.approx(0.5, abs=0.01)
    for lin in linear_layers(model).values():
        assert float((lin.weight == 0).float().mean()) == pytest.approx(0.5, abs=0.02)
    assert model.lm_head.weight.ne(0).all()  # embeddings and LM head are not pruned


@pytest.mark.parametrize("sparsity, pattern, match", [
    (1.2, None, "between 0 and 1"), (0.5, "4:2", "N must be"), (0.5, "half", "not 'unstructured'"),
])
def test_bad_settings_are_refused(sparsity, pattern, match):
    with pytest.raises(ConfigError, match=match):
        prune.parse_pattern(sparsity, pattern)
