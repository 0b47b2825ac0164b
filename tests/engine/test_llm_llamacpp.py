"""GGUF blocks that hold the point's own 4-bit grid, and the llama.cpp execution that runs them (skipped
where llama-cpp-python is not installed: it has no binary wheel on PyPI and compiles llama.cpp)."""
from __future__ import annotations

import builtins
import copy

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader, quants

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm.gguf_export import export_gguf, grid_blocks
from gemini_core.kinds.llm.quantize import quantize_model, rtn
from gemini_core.kinds.llm.runtimes import llamacpp_llm
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings
from gemini_core.kinds.llm.runtimes.measure import _greedy
from gemini_core.kinds.llm.runtimes.run import load_runner
from tests.engine.llm_support import one_llm_point

SMALL = LLMRunSettings(prompt_tokens=8, new_tokens=6, prefill_tokens=16, repeats=1, context_len=32, threads=1)


def ids(n: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, 300, (n,), generator=torch.Generator().manual_seed(seed))


def quantized(model, symmetric: bool, group: int):
    """RTN with range clipping: groups whose extremes are clipped sit on a grid that a quantizer deriving
    its scale from the extremes (gguf-py's) does not find, as GPTQ's clipped groups do."""
    model = copy.deepcopy(model)
    quantize_model(model, "rtn", 4, group, symmetric=symmetric, clip=True)
    with torch.no_grad():  # the (untied) head on the same grid, so every matrix in the file is the point's
        model.lm_head.weight.copy_(rtn(model.lm_head.weight, 4, group, symmetric, clip=True))
    return model


def settings(bits, group):
    return LLMRunSettings(**{**SMALL.to_dict(), "weight_bits": bits, "group_size": group})


# regrid: whether gguf-py's quantizer (scale from each 32-block's extremes) lands elsewhere. An asymmetric
# g32 grid it finds again (clipped values sit at the grid's ends); every other grid here it does not.
@pytest.mark.parametrize("qtype,symmetric,group,regrid", [("q4_0", True, 32, True), ("q4_0", True, 64, True),
                                                          ("q4_1", False, 32, False), ("q4_1", False, 64, True),
                                                          ("q4_1", True, 32, True)])
def test_gguf_4bit_blocks_hold_the_points_own_grid(tiny_lm, tmp_path, qtype, symmetric, group, regrid):
    model = quantized(tiny_lm.model, symmetric, group)
    path = export_gguf(model, tiny_lm.tokenizer, tmp_path / "m.gguf", qtype)
    tensors = {t.name: t for t in GGUFReader(str(path)).tensors}
    weight = model.model.layers[1].mlp.down_proj.weight.detach().numpy()
    stored = tensors["blk.1.ffn_down.weight"]
    assert stored.tensor_type == GGMLQuantizationType[qtype.upper()]
    back = quants.dequantize(np.asarray(stored.data), stored.tensor_type).reshape(weight.shape)
    # the codes are the point's; only the scales (and q4_1's offsets) are rounded to f16, as in every runtime
    assert np.abs(back - weight).max() <= 2e-3 * np.abs(weight).max()
    again = quants.dequantize(quants.quantize(weight, stored.tensor_type), stored.tensor_type)
    error, again_error = np.abs(back - weight).mean(), np.abs(again - weight).mean()
    assert (again_error > 20 * error) if regrid else np.isclose(again_error, error)


def test_q4_0_refuses_an_asymmetric_grid_and_the_untied_embedding_goes_to_q8_0(tiny_lm, tmp_path):
    w = rtn(torch.randn(4, 64), 4, 32, symmetric=False).numpy()
    assert grid_blocks(w, "q4_0") is None and grid_blocks(w, "q4_1") is not None
    assert grid_blocks(np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32), "q4_1") is None
    model = quantized(tiny_lm.model, True, 32)
    path = export_gguf(model, tiny_lm.tokenizer, tmp_path / "m.gguf", "q4_0")
    kinds = {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}
    assert kinds["token_embd.weight"] == "Q8_0"      # the tiny Llama's embedding is untied and float
    assert kinds["output.weight"] == "Q4_0"


def test_llamacpp_missing_or_unsupported_grid_is_one_line(tiny_lm, monkeypatch):
    with pytest.raises(ConfigError, match="3-bit"):
        llamacpp_llm.gguf_type_for(tiny_lm.model, settings(3, 32))
    with pytest.raises(ConfigError, match="groups of 32 weights or a multiple, not 48"):
        llamacpp_llm.gguf_type_for(tiny_lm.model, settings(4, 48))
    real_import = builtins.__import__

    def no_llama(name, *args, **kwargs):
        if name == "llama_cpp":
            raise ImportError("No module named 'llama_cpp'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_llama)
    with pytest.raises(ConfigError, match="llama.cpp is not installed .*pip install llama-cpp-python"):
        load_runner("llama.cpp", tiny_lm.model, tiny_lm.tokenizer, SMALL)


def test_llamacpp_float_matches_torch(tiny_lm):
    pytest.importorskip("llama_cpp")
    runner, _ = load_runner("llama.cpp", tiny_lm.model, tiny_lm.tokenizer, SMALL)
    x = ids()
    expected = tiny_lm.model(input_ids=x[None]).logits[0]
    torch.testing.assert_close(runner.logits(x), expected, atol=2e-3, rtol=2e-3)
    prompt = x[:8]
    tokens = _greedy(runner, prompt, 6)[0]
    assert tokens == expected_greedy(tiny_lm.model, prompt, 6)
    assert runner.describe()["gguf_tensor_types"] == {"F32": len(tiny_lm.model.state_dict())}


@pytest.mark.parametrize("symmetric,kind", [(True, "Q4_0"), (False, "Q4_1")])
def test_llamacpp_runs_the_4bit_grid(tiny_lm, symmetric, kind):
    pytest.importorskip("llama_cpp")
    model = quantized(tiny_lm.model, symmetric, 32)
    runner, _ = load_runner("llama.cpp", model, tiny_lm.tokenizer, settings(4, 32))
    kinds = {t.name: t.tensor_type.name for t in GGUFReader(str(runner.path)).tensors}
    assert [k for name, k in kinds.items() if name.startswith("blk.") and k != "F32"] == [kind] * 14
    assert kinds["output.weight"] == kind
    x = ids()
    got, expected = runner.logits(x), model(input_ids=x[None]).logits[0]
    # llama.cpp rounds activations to 8 bits for its 4-bit dot products: close, not equal
    assert torch.corrcoef(torch.stack([got.flatten(), expected.flatten()]))[0, 1] > 0.999
    float_runner, _ = load_runner("llama.cpp", tiny_lm.model, tiny_lm.tokenizer, SMALL)
    assert runner.weight_bytes_per_token() < float_runner.weight_bytes_per_token() / 3


def expected_greedy(model, prompt, n):
    out = model.generate(input_ids=prompt[None], attention_mask=torch.ones(1, prompt.numel(), dtype=torch.long),
                         max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, prompt.numel():].tolist()


def test_a_sweep_point_runs_on_llamacpp_with_its_grid_and_bandwidth_figures(tiny_llm_dir, tmp_path):
    pytest.importorskip("llama_cpp")
    point = one_llm_point(tiny_llm_dir, tmp_path, "gptq-sym-head", "llama.cpp")
    assert point["config"]["execution"] == "llama.cpp"
    assert point["gguf_tensor_types"]["Q4_0"] == 15  # 14 decoder Linears and the calibrated head
    assert 0 < point["perplexity"] < 1.5 * point["reference"]["perplexity"]
    assert point["decode_tokens_per_s"] > 0 and 0 < point["fraction_of_bandwidth_limit"]


def test_an_untrusted_gguf_is_checked_in_python_before_llamacpp_reads_it(tiny_lm, tmp_path):
    import gguf

    from gemini_core.errors import CheckpointError

    good = export_gguf(tiny_lm.model, tiny_lm.tokenizer, tmp_path / "good.gguf", "q4_0")
    assert llamacpp_llm.read_checked(good).tensors
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match="garbage.gguf is not a readable Llama GGUF file"):
        llamacpp_llm.read_checked(garbage)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated.gguf is not a readable Llama GGUF file"):
        llamacpp_llm.read_checked(truncated)
    other = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(str(other), "gpt2")
    writer.add_tensor("w", np.ones((2, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError, match="other.gguf"):
        llamacpp_llm.read_checked(other)
    # bytes flipped anywhere in the header and tensor table: it parses, or it is one line; never a traceback
    data, rng = good.read_bytes(), np.random.default_rng(0)
    for i in range(30):
        mutated = bytearray(data)
        for pos in rng.integers(4, min(len(data), 20_000), 3):
            mutated[int(pos)] = int(rng.integers(0, 256))
        path = tmp_path / f"mutated{i}.gguf"
        path.write_bytes(bytes(mutated))
        try:
            llamacpp_llm.read_checked(path)
        except CheckpointError as exc:
            assert "\n" not in str(exc) and f"mutated{i}.gguf" in str(exc)


def test_the_registry_names_what_an_optional_execution_needs(monkeypatch):
    import importlib.util
    from types import SimpleNamespace

    from gemini_core.kinds.llm.runtimes import registry

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    assert registry.missing(["torch", "openvino", "llama.cpp"]) == {
        "llama.cpp": 'pip install "llama-cpp-python>=0.3.36,<0.4" (compiles llama.cpp, minutes)'}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: SimpleNamespace() if name == "llama_cpp" else real(name, *a))
    assert registry.missing(["llama.cpp"]) == {}
