import pytest
import torch

from gemini_core.compress import compress
from gemini_core.config import CompressionConfig
from gemini_core.runtimes.torch_kernels import SparseLinear
from gemini_core.training.loop import predict


def _outputs(model, scenario, n=64):
    with torch.no_grad():
        return model(**scenario.splits.test.first(n).inputs).float()


def test_sparse_linear_matches_dense():
    linear = torch.nn.Linear(64, 32)
    with torch.no_grad():
        linear.weight[torch.rand(linear.weight.shape) < 0.9] = 0
    x = torch.randn(5, 7, 64)
    assert torch.allclose(SparseLinear(linear)(x), linear(x), atol=1e-5)


@pytest.mark.parametrize("method, ratio", [("magnitude-unstructured", 0.9), ("2:4", 0.5), ("none", 0.0)])
def test_sparse_execution_equals_dense_execution(digits, method, ratio):
    scenario, baseline = digits
    dense = compress(baseline.model, CompressionConfig(prune_method=method, prune_ratio=ratio, bits=4), scenario)
    sparse = compress(baseline.model, CompressionConfig(prune_method=method, prune_ratio=ratio, bits=4,
                                                        execution="sparse"), scenario)
    assert "sparse-csr" in sparse.backend and "sparse" not in dense.backend
    assert torch.allclose(_outputs(sparse.model, scenario), _outputs(dense.model, scenario), atol=1e-4)


def test_int8_runs_real_int8_kernels_close_to_float(digits):
    scenario, baseline = digits
    compressed = compress(baseline.model, CompressionConfig(bits=8), scenario)
    kinds = set(compressed.layer_backends.values())
    assert "int8-dynamic" in kinds
    dyn = [m for m in compressed.model.modules() if type(m).__name__ == "Linear" and hasattr(m, "_packed_params")]
    assert dyn, "no dynamically quantized Linear in the runnable model"
    ref = _outputs(baseline.model, scenario)
    out = _outputs(compressed.model, scenario)
    assert (out - ref).abs().max() < 0.15 * ref.abs().max()
    agree = (out.argmax(1) == ref.argmax(1)).float().mean()
    assert agree > 0.97


def test_group_wise_int8_falls_back_to_weight_only(digits):
    scenario, baseline = digits
    compressed = compress(baseline.model, CompressionConfig(bits=8, granularity="group-32"), scenario)
    assert "int8-dynamic" not in compressed.backend and "weight-only int8" in compressed.backend


def test_bf16_runs_in_bf16(digits):
    scenario, baseline = digits
    compressed = compress(baseline.model, CompressionConfig(bits=16), scenario)
    assert compressed.backend == "dense-bf16"
    assert next(compressed.model.parameters()).dtype == torch.bfloat16
    preds = predict(compressed.model, scenario.splits.test)
    ref = predict(baseline.model, scenario.splits.test)
    assert (preds == ref).float().mean() > 0.97


def test_compress_leaves_the_baseline_untouched(digits):
    scenario, baseline = digits
    before = {k: v.clone() for k, v in baseline.model.state_dict().items()}
    compress(baseline.model, CompressionConfig(prune_method="l1-structured", prune_ratio=0.5, bits=2,
                                               finetune_steps=5), scenario)
    after = baseline.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
