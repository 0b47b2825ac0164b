"""Decode figures, the bandwidth limit, the auto choice and the runnable exports (tiny Llama)."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from gemini_core.errors import CheckpointError, ConfigError
from gemini_core.kinds.llm.runtimes import auto, measure_on_runtime
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings
from gemini_core.kinds.llm.runtimes.exports import evaluate_export, export_llm
from gemini_core.kinds.llm.runtimes.measure import bandwidth_limit, copy_bandwidth_gb_s, read_bandwidth_gb_s
from gemini_core.kinds.llm.runtimes.run import load_runner

SMALL = {"prompt_tokens": 8, "new_tokens": 5, "prefill_tokens": 16, "repeats": 1, "context_len": 32}


def ids(n: int = 48) -> torch.Tensor:
    return torch.randint(1, 300, (n,), generator=torch.Generator().manual_seed(3))


def test_bandwidth_limit_arithmetic():
    # 10 GB/s, 100 MB per token -> at most 100 tokens/s
    assert bandwidth_limit(10.0, 100e6) == pytest.approx(100.0)
    assert bandwidth_limit(30.0, 540e6) == pytest.approx(55.6, abs=0.1)
    with pytest.raises(ConfigError):
        bandwidth_limit(10.0, 0)


def test_copy_and_read_bandwidth_are_measured():
    out = copy_bandwidth_gb_s(threads=2, mbytes=16, repeats=2)
    assert out["copy_threads"] == 2 and 0.1 < out["copy_gb_per_s"] < 1000
    read = read_bandwidth_gb_s(threads=2, mbytes=16, repeats=2)
    assert read["read_threads"] == 2 and 0.1 < read["read_gb_per_s"] < 1000


def test_measure_on_runtime_reports_decode_and_the_limit(tiny_lm):
    rec = measure_on_runtime("torch", tiny_lm.model, tiny_lm.tokenizer, ids(), SMALL)
    assert rec["new_tokens"] == 5 and rec["prompt_tokens"] == 8 and len(rec["tokens"]) == 5
    assert rec["decode_tokens_per_s"] > 0 and rec["ttft_ms"] > 0 and rec["prefill_tokens"] == 16
    linear_bytes = sum(m.weight.numel() * 4 for m in tiny_lm.model.modules() if isinstance(m, torch.nn.Linear))
    kv = 2 * 2 * 2 * 16 * 4 * (8 + 5 / 2)  # k+v, layers, kv heads, head dim, f32, mean context
    assert rec["bytes_read_per_token"] == int(linear_bytes + kv)
    limit = rec["copy_gb_per_s"] * 1e9 / rec["bytes_read_per_token"]
    assert rec["bandwidth_limit_tokens_per_s"] == pytest.approx(limit)
    assert rec["fraction_of_bandwidth_limit"] == pytest.approx(rec["decode_tokens_per_s"] / limit)
    read_limit = rec["read_gb_per_s"] * 1e9 / rec["bytes_read_per_token"]
    assert rec["fraction_of_read_limit"] == pytest.approx(rec["decode_tokens_per_s"] / read_limit)
    assert rec["peak_rss_mb"] > 0 and rec["kv_cache_mb_at_end"] > 0 and "load_average_1m" in rec


def test_auto_times_every_candidate_and_keeps_the_fastest_within_tolerance(tiny_lm):
    choice = auto.choose(tiny_lm.model, tiny_lm.tokenizer, ids(), {**SMALL, "head_bits": None},
                         candidates=["torch", "openvino", "onnxruntime-genai-missing"], rounds=2)
    cands = choice["candidates"]
    assert "error" in cands["onnxruntime-genai-missing"]  # an unknown or failing one is reported, not chosen
    for name in ("torch", "openvino"):
        assert len(cands[name]["rounds_tokens_per_s"]) == 2 and cands[name]["within_tolerance"]
    fastest = max(("torch", "openvino"), key=lambda n: cands[n]["decode_tokens_per_s"])
    assert choice["chosen"] == fastest
    with pytest.raises(ConfigError, match="no execution keeps perplexity"):
        auto.choose(tiny_lm.model, tiny_lm.tokenizer, ids(), {**SMALL, "ppl_tolerance": -1.0},
                    candidates=["torch"], rounds=1)


def test_openvino_ir_export_reloads_with_the_same_perplexity(tiny_lm, tmp_path):
    settings = LLMRunSettings(**SMALL, head_bits=8)
    folder = export_llm(tiny_lm.model, tiny_lm.tokenizer, tmp_path / "ir", "openvino-ir", settings)
    assert (folder / "openvino_model.xml").is_file() and (folder / "tokenizer.json").is_file()
    in_memory, _ = load_runner("openvino", tiny_lm.model, None, settings)
    x = ids()
    torch.testing.assert_close(in_memory.logits(x), evaluate_runner_logits(folder, settings, x))
    rec = evaluate_export(folder, "openvino-ir", x, settings)
    assert rec["format"] == "openvino-ir" and rec["file_size_mb"] > 0 and rec["decode_tokens_per_s"] > 0
    with pytest.raises(CheckpointError, match="not an OpenVINO LLM export"):
        evaluate_export(tmp_path, "openvino-ir", x, settings)


def evaluate_runner_logits(folder, settings, x):
    from gemini_core.kinds.llm.runtimes.openvino_llm import load_ir

    return load_ir(folder, settings).logits(x)


@pytest.mark.parametrize("fmt,name", [("hf", "hf"), ("gguf", "m.gguf")])
def test_hf_and_gguf_exports_reload_and_are_remeasured(tiny_lm, tmp_path, fmt, name):
    path = export_llm(tiny_lm.model, tiny_lm.tokenizer, tmp_path / name, fmt)
    rec = evaluate_export(path, fmt, ids(), LLMRunSettings(**SMALL))
    direct = measure_on_runtime("torch", tiny_lm.model, tiny_lm.tokenizer, ids(), SMALL)
    # GGUF is reloaded by llama.cpp where it is installed (its own f32 kernels), else by transformers
    assert rec["runtime"] == ("llama.cpp" if fmt == "gguf" and importlib.util.find_spec("llama_cpp") else "torch")
    exact = rec["runtime"] == "torch"
    assert rec["perplexity"] == pytest.approx(direct["perplexity"], rel=1e-5 if exact else 1e-4)
    assert rec["format"] == fmt and rec["decode_tokens_per_s"] > 0
    with pytest.raises(ConfigError, match="unknown LLM export format"):
        export_llm(tiny_lm.model, tiny_lm.tokenizer, tmp_path / "x", "tflite")
