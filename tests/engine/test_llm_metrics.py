"""Perplexity, zero-shot accuracy, latency, decode speed and memory figures."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from gemini_core.errors import ConfigError, DataError
from gemini_core.kinds.llm import metrics


class Uniform(torch.nn.Module):
    """Equal logits for every token: perplexity must be exactly the vocabulary size."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids, **_):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab))


def test_uniform_model_has_perplexity_equal_to_vocab_size():
    ids = torch.randint(0, 50, (300,))
    result = metrics.perplexity(Uniform(50), ids, context_len=64, stride=32)
    assert result["perplexity"] == pytest.approx(50, rel=1e-5)
    assert result["tokens_scored"] == 299


def test_one_window_matches_direct_cross_entropy(tiny_lm):
    ids = torch.randint(0, 300, (100,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = tiny_lm.model(input_ids=ids[None]).logits[0, :-1]
    expected = math.exp(float(F.cross_entropy(logits, ids[1:])))
    assert metrics.perplexity(tiny_lm.model, ids, context_len=128)["perplexity"] == pytest.approx(expected, rel=1e-5)


def test_sliding_window_scores_every_token_once(tiny_lm):
    ids = torch.randint(0, 300, (250,), generator=torch.Generator().manual_seed(1))
    strided = metrics.perplexity(tiny_lm.model, ids, context_len=64, stride=16)
    assert strided["tokens_scored"] == 249 and strided["stride"] == 16
    with pytest.raises(ConfigError):
        metrics.perplexity(tiny_lm.model, ids, context_len=64, stride=128)


class Prefers(torch.nn.Module):
    """Puts all probability on one token id: zero-shot picks the label word starting with it."""

    def __init__(self, vocab, token):
        super().__init__()
        self.vocab, self.token = vocab, token

    def forward(self, input_ids, **_):
        logits = torch.full((*input_ids.shape, self.vocab), -10.0)
        logits[..., self.token] = 10.0
        return SimpleNamespace(logits=logits)


def test_zero_shot_accuracy_scores_label_words(tiny_lm):
    tok = tiny_lm.tokenizer
    words = {"pos": " great", "neg": " terrible"}
    first = tok(words["pos"], add_special_tokens=False)["input_ids"][0]
    model = Prefers(len(tok), first)
    result = metrics.zero_shot_accuracy(model, tok, ["a film", "b film", "c"], ["pos", "neg", "pos"], words)
    assert result["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(DataError, match="no label word"):
        metrics.zero_shot_accuracy(model, tok, ["a"], ["meh"], words)


def test_latency_and_decode_speed_are_measured(tiny_lm):
    ids = torch.arange(1, 33)
    prefill = metrics.prefill_latency(tiny_lm.model, ids, warmup=1, repeats=5)
    assert 0 < prefill["prefill_ms_p10"] <= prefill["prefill_ms_p50"] <= prefill["prefill_ms_p90"]
    decode = metrics.decode_tokens_per_s(tiny_lm.model, ids[:8], new_tokens=6, repeats=1)
    assert decode["decode_tokens_per_s"] > 0 and decode["new_tokens"] == 6


def test_peak_memory_sees_a_temporary_allocation():
    def allocate():
        big = torch.ones(64 * 2**20 // 4 * 4)  # 256 MB, touched
        return float(big[-1])

    result, figures = metrics.peak_rss_mb(allocate)
    assert result == 1.0
    assert figures["peak_rss_increase_mb"] > 150


def test_file_size(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 2**20)
    (tmp_path / "b").write_bytes(b"x" * 2**19)
    assert metrics.file_size_mb(tmp_path) == pytest.approx(1.5)
