"""Decode measured the same way on every runtime, and each point against its memory-bandwidth limit.

- decode: greedy, exactly ``new_tokens`` tokens after a fixed ``prompt_tokens`` prompt; time to first
  token (the prefill of that prompt) and decode tokens/s = (new_tokens - 1) / time after the first;
- prefill tokens/s at ``prefill_tokens`` (one forward pass that fills the cache);
- peak resident memory of the process during decoding (weights, runtime, KV cache), with the KV
  cache's own size computed from its shape and element type;
- the limit: decoding reads every weight once per token, so tokens/s cannot exceed
  copy bandwidth / bytes read per token (weights + the KV cache at the mean context). A copy also
  writes every byte (and reads the target line first), so a pure read stream runs faster: the read
  bandwidth (a float32 sum over a large tensor) gives the tighter bound, recorded beside the copy one
  (SmolLM2 in f32 on llama.cpp decoded at 2.6x the copy-based "limit", 74% of the read-based one).
"""
from __future__ import annotations

import os
import statistics
import threading
import time

import numpy as np
import torch

from gemini_core.errors import ConfigError, DataError
from gemini_core.kinds.llm import metrics
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings, Runner


def copy_bandwidth_gb_s(threads: int = 2, mbytes: int = 256, repeats: int = 5) -> dict:
    """Bytes copied per second by ``threads`` threads, each copying its own ``mbytes`` MB array
    (numpy releases the GIL while copying); the best of ``repeats``. A copy reads and writes each
    byte once: this counts the bytes copied (the read stream), as decoding's weight reads are."""
    threads = max(1, threads)
    n = mbytes * 2**20 // 8
    sources = [np.ones(n) for _ in range(threads)]
    targets = [np.empty_like(s) for s in sources]
    best = float("inf")
    for _ in range(repeats + 1):
        workers = [threading.Thread(target=np.copyto, args=(t, s)) for t, s in zip(targets, sources)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = min(best, time.perf_counter() - start)
    return {"copy_gb_per_s": threads * n * 8 / best / 1e9, "copy_threads": threads, "copy_mb_per_thread": mbytes}


def read_bandwidth_gb_s(threads: int = 2, mbytes: int = 512, repeats: int = 5) -> dict:
    """Bytes read per second by torch's vectorized sum over one ``mbytes`` MB float32 tensor on ``threads``
    threads (a read stream, as decoding's weight reads are; nothing written); the best of ``repeats``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        data = torch.ones(mbytes * 2**20 // 4)
        best = float("inf")
        for _ in range(repeats + 1):
            start = time.perf_counter()
            data.sum()
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return {"read_gb_per_s": data.numel() * 4 / best / 1e9, "read_threads": max(1, threads), "read_mb": mbytes}


def bandwidth_limit(copy_gb_per_s: float, bytes_per_token: float) -> float:
    """The tokens/s bound when each token must read ``bytes_per_token`` at ``copy_gb_per_s``."""
    if bytes_per_token <= 0 or copy_gb_per_s <= 0:
        raise ConfigError("bandwidth limit needs positive bandwidth and bytes per token")
    return copy_gb_per_s * 1e9 / bytes_per_token


def _greedy(runner: Runner, prompt: torch.Tensor, new_tokens: int) -> tuple[list[int], float, float]:
    start = time.perf_counter()
    token = runner.start(prompt)
    first = time.perf_counter()
    tokens = [token]
    for _ in range(new_tokens - 1):
        token = runner.step(token)
        tokens.append(token)
    return tokens, first - start, time.perf_counter() - first


def decode(runner: Runner, prompt: torch.Tensor, settings: LLMRunSettings) -> dict:
    if settings.new_tokens < 2:
        raise ConfigError("decode speed needs at least 2 new tokens")
    _greedy(runner, prompt, settings.new_tokens)  # warm-up
    runs = []

    def timed():
        for _ in range(settings.repeats):
            runs.append(_greedy(runner, prompt, settings.new_tokens))

    _, memory = metrics.peak_rss_mb(timed)
    ttft = statistics.median(r[1] for r in runs)
    decode_s = statistics.median(r[2] for r in runs)
    return {"decode_tokens_per_s": (settings.new_tokens - 1) / decode_s, "ttft_ms": ttft * 1e3,
            "new_tokens": settings.new_tokens, "prompt_tokens": int(prompt.numel()),
            "decode_tokens_per_s_runs": [round((settings.new_tokens - 1) / r[2], 2) for r in runs],
            "tokens": runs[0][0], **memory}


def prefill(runner: Runner, prompt: torch.Tensor, repeats: int) -> dict:
    runner.start(prompt)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner.start(prompt)
        samples.append(time.perf_counter() - start)
    seconds = statistics.median(samples)
    return {"prefill_tokens": int(prompt.numel()), "prefill_ms": seconds * 1e3,
            "prefill_tokens_per_s": prompt.numel() / seconds,
            **{f"prefill_ms_{q}": ms for q, ms in metrics._percentiles_ms(samples).items()}}


def measure_runner(runner: Runner, eval_ids: torch.Tensor, settings: LLMRunSettings, copy_gb_per_s: float,
                   perplexity_tokens: int | None = None, read_gb_per_s: float | None = None) -> dict:
    """Every figure of one point on one runtime (perplexity, decode, prefill, memory, the limits)."""
    ids = eval_ids.reshape(-1)
    need = max(settings.prompt_tokens, settings.prefill_tokens)
    if ids.numel() < need + 2:
        raise DataError(f"the evaluation text has {ids.numel()} tokens; the measurement needs more than {need}")
    ppl_ids = ids[-perplexity_tokens:] if perplexity_tokens else ids
    start = time.perf_counter()
    quality = metrics.perplexity(runner.as_model(), ppl_ids, context_len=settings.context_len)
    ppl_s = time.perf_counter() - start
    speed = decode(runner, ids[:settings.prompt_tokens], settings)
    fill = prefill(runner, ids[:settings.prefill_tokens], settings.repeats)
    weights = runner.weight_bytes_per_token()
    mean_context = settings.prompt_tokens + settings.new_tokens / 2
    per_token = weights + runner.kv_bytes_per_position() * mean_context
    limit = bandwidth_limit(copy_gb_per_s, per_token)
    kv_mb = runner.kv_bytes_per_position() * (settings.prompt_tokens + settings.new_tokens) / 2**20
    return {**runner.describe(), "perplexity": quality["perplexity"], "perplexity_tokens": quality["tokens_scored"],
            "perplexity_seconds": round(ppl_s, 1), "window_nll": quality["window_nll"],
            "window_tokens": quality["window_tokens"], **speed, **fill,
            "weight_mb_read_per_token": weights / 2**20, "bytes_read_per_token": int(per_token),
            "kv_cache_mb_at_end": kv_mb, "copy_gb_per_s": copy_gb_per_s,
            "bandwidth_limit_tokens_per_s": limit, "fraction_of_bandwidth_limit": speed["decode_tokens_per_s"] / limit,
            **_read_limit(speed["decode_tokens_per_s"], per_token, read_gb_per_s),
            "load_average_1m": os.getloadavg()[0], "settings": settings.to_dict()}


def _read_limit(tokens_per_s: float, bytes_per_token: float, read_gb_per_s: float | None) -> dict:
    if not read_gb_per_s:
        return {}
    limit = bandwidth_limit(read_gb_per_s, bytes_per_token)
    return {"read_gb_per_s": read_gb_per_s, "read_limit_tokens_per_s": limit,
            "fraction_of_read_limit": tokens_per_s / limit}
