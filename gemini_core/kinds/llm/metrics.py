"""Measured figures of a causal LM: perplexity, zero-shot label accuracy, prefill latency,
decode speed, peak memory and file size. Every figure names its unit and its settings."""
from __future__ import annotations

import math
import statistics
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gemini_core.errors import Cancelled, ConfigError, DataError


@torch.no_grad()
def check_stop(should_stop, what: str) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled(f"stopped while measuring {what}; this point stays unmeasured")


def perplexity(model, ids: torch.Tensor, context_len: int = 512, stride: int | None = None,
               should_stop=None) -> dict:
    """Token-level perplexity over ``ids`` with a sliding window: each window of ``context_len``
    tokens scores only the tokens not scored before, so every token after the first counts once
    and (for stride < context_len) sees at least context_len - stride tokens of context.

    ``window_nll`` / ``window_tokens``: each window's summed loss and the tokens it scored. Neighbouring
    tokens' losses are not independent, so an interval of the perplexity (and the paired ratio of two
    models on the same text) resamples whole windows; a record that keeps them gets both.

    ``should_stop`` is asked before every window (one window is seconds on 2 cores; a whole evaluation minutes)."""
    stride = stride or context_len
    if not 0 < stride <= context_len:
        raise ConfigError(f"stride must be between 1 and the context length {context_len}, not {stride}")
    ids = ids.reshape(-1)
    nll, scored, prev_end = 0.0, 0, 0
    window_nll: list[float] = []
    window_tokens: list[int] = []
    for begin in range(0, ids.numel() - 1, stride):
        check_stop(should_stop, "perplexity")
        end = min(begin + context_len, ids.numel())
        window = ids[begin:end].unsqueeze(0)
        logits = model(input_ids=window, use_cache=False).logits[0, :-1].float()
        targets = window[0, 1:].clone()
        new_from = max(prev_end - begin - 1, 0)  # targets already scored by the previous window
        loss = F.cross_entropy(logits[new_from:], targets[new_from:], reduction="sum")
        nll += float(loss)
        scored += targets.numel() - new_from
        window_nll.append(float(loss))
        window_tokens.append(targets.numel() - new_from)
        prev_end = end
        if end == ids.numel():
            break
    return {"perplexity": math.exp(nll / scored), "nll_per_token": nll / scored,
            "tokens_scored": scored, "context_len": context_len, "stride": stride,
            "window_nll": window_nll, "window_tokens": window_tokens}


@torch.no_grad()
def _continuation_logprob(model, tokenizer, prompt: str, word: str) -> float:
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    word_ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + word_ids])
    logp = torch.log_softmax(model(input_ids=ids, use_cache=False).logits[0, :-1].float(), -1)
    positions = range(len(prompt_ids) - 1, ids.shape[1] - 1)
    return float(sum(logp[p, ids[0, p + 1]] for p in positions))


def zero_shot_accuracy(model, tokenizer, texts: list[str], labels: list[str],
                       label_words: dict[str, str], template: str = "{text}\nSentiment:", should_stop=None) -> dict:
    """Predict each text's label as the label word (e.g. " positive") the model finds most likely
    after ``template``; the fraction predicted right."""
    if len(texts) != len(labels) or not texts:
        raise DataError("zero-shot accuracy needs as many labels as texts, and at least one")
    unknown = sorted(set(labels) - set(label_words))
    if unknown:
        raise DataError(f"labels {unknown[:3]} have no label word; give one for each label")
    right = 0
    for text, label in zip(texts, labels):
        check_stop(should_stop, "zero-shot accuracy")
        prompt = template.format(text=text)
        scores = {lab: _continuation_logprob(model, tokenizer, prompt, w) for lab, w in label_words.items()}
        right += max(scores, key=scores.get) == label
    return {"accuracy": right / len(texts), "examples": len(texts), "label_words": dict(label_words)}


def _percentiles_ms(samples: list[float]) -> dict:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
    return {"p10": pick(0.1) * 1e3, "p50": statistics.median(ordered) * 1e3, "p90": pick(0.9) * 1e3}


@torch.no_grad()
def prefill_latency(model, ids: torch.Tensor, warmup: int = 2, repeats: int = 7) -> dict:
    """Time of one forward pass over one sequence (batch 1), after ``warmup`` untimed passes."""
    window = ids.reshape(1, -1)
    for _ in range(warmup):
        model(input_ids=window, use_cache=False)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(input_ids=window, use_cache=False)
        samples.append(time.perf_counter() - start)
    p = _percentiles_ms(samples)
    return {"prefill_ms_p10": p["p10"], "prefill_ms_p50": p["p50"], "prefill_ms_p90": p["p90"],
            "prefill_tokens": window.shape[1], "prefill_repeats": repeats}


@torch.no_grad()
def _generate_seconds(model, prompt: torch.Tensor, new_tokens: int) -> float:
    start = time.perf_counter()
    model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                   max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0)
    return time.perf_counter() - start


def decode_tokens_per_s(model, prompt_ids: torch.Tensor, new_tokens: int = 32, repeats: int = 3) -> dict:
    """Greedy decoding speed without the prefill: (time for N tokens - time for 1 token) / (N - 1)."""
    if new_tokens < 2:
        raise ConfigError("decode speed needs at least 2 new tokens")
    prompt = prompt_ids.reshape(1, -1)
    _generate_seconds(model, prompt, 2)  # warm-up
    per_token = []
    for _ in range(repeats):
        full = _generate_seconds(model, prompt, new_tokens)
        first = _generate_seconds(model, prompt, 1)
        per_token.append(max(full - first, 1e-9) / (new_tokens - 1))
    return {"decode_tokens_per_s": 1.0 / statistics.median(per_token), "new_tokens": new_tokens,
            "prompt_tokens": prompt.shape[1], "decode_repeats": repeats}


def peak_rss_mb(fn, interval_s: float = 0.005) -> tuple[object, dict]:
    """Run ``fn()`` while sampling the process's resident memory; returns (result, figures)."""
    import psutil

    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            done.wait(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = fn()
    finally:
        done.set()
        thread.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return result, {"peak_rss_mb": peak[0] / 2**20, "peak_rss_increase_mb": (peak[0] - before) / 2**20}


def parameter_mb(model) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20


def file_size_mb(path) -> float:
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20
