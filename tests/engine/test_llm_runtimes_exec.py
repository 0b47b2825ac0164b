"""LLM executions on the tiny random Llama: each loads and matches torch's logits and greedy tokens;
the OpenVINO weight grid carries the product's quantized weights over exactly."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm.quantize import quantize_model, rtn
from gemini_core.kinds.llm.runtimes import measure_on_runtime, names
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings
from gemini_core.kinds.llm.runtimes.measure import _greedy
from gemini_core.kinds.llm.runtimes.ov_weights import grid_codes
from gemini_core.kinds.llm.runtimes.run import load_runner

EXACT = LLMRunSettings(prompt_tokens=8, new_tokens=6, prefill_tokens=16, repeats=1, context_len=32,
                       head_bits=None, kv_cache_precision="f32")


def ids(n: int = 40, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, 300, (n,), generator=torch.Generator().manual_seed(seed))


def hf_greedy(model, prompt: torch.Tensor, n: int) -> list[int]:
    out = model.generate(input_ids=prompt[None], attention_mask=torch.ones(1, prompt.numel(), dtype=torch.long),
                         max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, prompt.numel():].tolist()


@pytest.fixture(scope="module")
def quantized(tiny_llm_dir):
    from gemini_core.kinds.llm.source import load_local

    model = load_local(tiny_llm_dir).model
    quantize_model(model, "rtn", 4, 32)
    return model


@pytest.fixture(scope="module")
def ov_quantized(quantized):
    runner, _ = load_runner("openvino", quantized, None, EXACT.__class__(**{**EXACT.to_dict(), "weight_bits": 4,
                                                                              "group_size": 32}))
    return runner


def test_torch_runner_matches_transformers(tiny_lm):
    runner, _ = load_runner("torch", tiny_lm.model, tiny_lm.tokenizer, EXACT)
    x = ids()
    torch.testing.assert_close(runner.logits(x), tiny_lm.model(input_ids=x[None]).logits[0])
    assert _greedy(runner, x[:8], 6)[0] == hf_greedy(tiny_lm.model, x[:8], 6)


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_grid_codes_recover_the_products_grid_exactly(bits):
    w = torch.randn(48, 128, generator=torch.Generator().manual_seed(bits))
    q = rtn(w, bits, 32).numpy()
    codes, scale, off = grid_codes(q, bits, 32)
    assert off == 0
    assert codes.min() >= -(2 ** (bits - 1)) and codes.max() <= 2 ** (bits - 1) - 1
    np.testing.assert_allclose((codes * scale).reshape(q.shape), q, rtol=0, atol=1e-6)
    assert grid_codes(w.numpy(), bits, 32)[2] > 0  # float weights are not on a grid: counted


def test_openvino_carries_the_quantized_weights_over(quantized, ov_quantized):
    assert ov_quantized.describe()["groups_off_grid"] == 0
    assert ov_quantized.describe()["layers_compressed"] == 14
    x = ids()
    ref = quantized(input_ids=x[None]).logits[0]
    # scales are stored in f16 (NNCF's layout): a relative error below 1e-3 per weight
    torch.testing.assert_close(ov_quantized.logits(x), ref, atol=1e-2, rtol=1e-2)
    assert _greedy(ov_quantized, x[:8], 6)[0] == hf_greedy(quantized, x[:8], 6)


def test_openvino_reads_fewer_bytes_than_torch(quantized, ov_quantized):
    torch_runner, _ = load_runner("torch", quantized, None, EXACT)
    # 4-bit codes + f16 scales per 32 weights vs float32, on the blocks; the float head is the same
    assert ov_quantized.weight_bytes_per_token() < 0.6 * torch_runner.weight_bytes_per_token()


def test_openvino_attention_is_fused_with_its_kv_cache(quantized, ov_quantized):
    """Each layer's cache read, concatenation and attention compile to one stateful attention node
    (without it a step ran the attention unfused and decoded ~40% slower)."""
    from collections import Counter

    ops = ov_quantized.compiled.get_runtime_model().get_ordered_ops()
    layer_types = Counter(op.get_rt_info()["layerType"].astype(str) for op in ops)
    assert layer_types["ScaledDotProductAttention"] == quantized.config.num_hidden_layers
    assert layer_types["Softmax"] == 0
    # an additive float mask (with a boolean one the fused attention ran ~4% slower per step on SmolLM2)
    sdpa = next(op for op in ops if op.get_rt_info()["layerType"].astype(str) == "ScaledDotProductAttention")
    assert sdpa.input_value(3).get_element_type().is_real()


def test_openvino_rotary_embedding_is_fused(quantized, ov_quantized):
    """Each layer's rotary embedding of the query and of the key compiles to one RoPE node (the
    frontend kept rotate_half's -1 as an unfoldable Convert, so RoPEFusionGPTNEOX did not match and
    every layer ran ~10 elementwise nodes instead)."""
    from collections import Counter

    layer_types = Counter(op.get_rt_info()["layerType"].astype(str)
                          for op in ov_quantized.compiled.get_runtime_model().get_ordered_ops())
    assert layer_types["RoPE"] == 2 * quantized.config.num_hidden_layers


def test_openvino_float_matches_torch_and_quantizes_the_head_on_request(tiny_lm):
    runner, _ = load_runner("openvino", tiny_lm.model, None, EXACT)
    x = ids()
    torch.testing.assert_close(runner.logits(x), tiny_lm.model(input_ids=x[None]).logits[0], atol=1e-4, rtol=1e-4)
    assert _greedy(runner, x[:8], 6)[0] == hf_greedy(tiny_lm.model, x[:8], 6)
    head8, _ = load_runner("openvino", tiny_lm.model, None, LLMRunSettings(**{**EXACT.to_dict(), "head_bits": 8}))
    assert head8.describe()["head_groups_requantized"] == tiny_lm.model.config.vocab_size
    assert head8.weight_bytes_per_token() < runner.weight_bytes_per_token()


def test_onnxruntime_genai_loads_the_export_and_matches_torch(tiny_lm):
    pytest.importorskip("onnxruntime_genai")
    runner, _ = load_runner("onnxruntime-genai", tiny_lm.model, tiny_lm.tokenizer, EXACT)
    x = ids()
    torch.testing.assert_close(runner.logits(x), tiny_lm.model(input_ids=x[None]).logits[0], atol=1e-3, rtol=1e-3)
    assert _greedy(runner, x[:8], 6)[0] == hf_greedy(tiny_lm.model, x[:8], 6)


def test_unknown_execution_and_setting_are_one_line_errors(tiny_lm):
    assert {"torch", "openvino", "auto"} <= set(names())
    with pytest.raises(ConfigError, match="unknown LLM execution 'tensorrt'"):
        measure_on_runtime("tensorrt", tiny_lm.model, tiny_lm.tokenizer, ids())
    with pytest.raises(ConfigError, match="unknown LLM run setting 'bitz'"):
        measure_on_runtime("torch", tiny_lm.model, tiny_lm.tokenizer, ids(), {"bitz": 4})


def test_structurally_pruned_model_converts(tiny_lm):
    from gemini_core.kinds.llm.structured import prune_structured

    model = copy.deepcopy(tiny_lm.model)
    prune_structured(model, ids(64).view(2, 32), mlp_ratio=0.5)
    runner, _ = load_runner("openvino", model, None, EXACT)
    x = ids()
    torch.testing.assert_close(runner.logits(x), model(input_ids=x[None]).logits[0], atol=1e-4, rtol=1e-4)


def test_openvino_kv_cache_precision_sets_bytes_per_position(tiny_lm):
    u8, _ = load_runner("openvino", tiny_lm.model, None, LLMRunSettings(**{**EXACT.to_dict(), "kv_cache_precision": "u8"}))
    assert u8.describe()["kv_cache_precision"] == "u8"
    assert u8.kv_bytes_per_position() == 2 * 2 * 2 * 16  # k+v, layers, kv heads, head dim, 1 byte
