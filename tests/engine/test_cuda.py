"""CUDA paths: 2:4 semi-structured sparsity, GPU latency and memory. Skipped without a GPU."""
import pytest
import torch

from gemini_core.compress import compress
from gemini_core.config import CompressionConfig
from gemini_core.measure import measure_latency, measure_memory
from gemini_core.runtimes.torch_kernels import build_execution_model
from gemini_core.techniques.prune import nm_mask

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _two_four_mlp(width=1024, depth=4):
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        linear = torch.nn.Linear(width, width)
        with torch.no_grad():
            linear.weight.mul_(nm_mask(linear.weight))
        layers += [linear, torch.nn.ReLU()]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(*layers)

        def forward(self, x):
            return self.body(x)

    return Net().eval()


def test_two_four_runs_semi_structured_and_matches_dense():
    model = _two_four_mlp()
    cuda = torch.device("cuda")
    sparse, backend, layers = build_execution_model(model, CompressionConfig(prune_method="2:4", execution="sparse"),
                                                    {}, cuda)
    assert "cuda-2:4-semi-structured-fp16" in backend, layers
    x = torch.randn(256, 1024, device=cuda)
    with torch.no_grad():
        ref = model.to(cuda).half()(x.half()).float()
        out = sparse(x=x)
    assert torch.allclose(out, ref, atol=5e-2, rtol=5e-2)


def test_gpu_latency_and_memory_are_measured_on_the_gpu():
    model = _two_four_mlp().cuda()
    x = {"x": torch.randn(64, 1024, device="cuda")}
    latency = measure_latency(model, x, "cuda", min_runs=20, min_seconds=0.1)
    assert latency["latency_runs"] >= 20 and 0 < latency["latency_ms_p50"] <= latency["latency_ms_p90"]
    memory = measure_memory(model, x, "cuda")
    weights = sum(p.numel() * 4 for p in model.parameters())
    assert memory["peak_memory_bytes"] >= weights and memory["activation_peak_bytes"] > 0


def test_digits_points_run_on_cuda(digits):
    scenario, baseline = digits
    for config in (CompressionConfig(bits=16), CompressionConfig(prune_method="2:4", execution="sparse"),
                   CompressionConfig(prune_method="l1-structured", prune_ratio=0.5, bits=4)):
        compressed = compress(baseline.model, config, scenario, device="cuda")
        with torch.no_grad():
            logits = compressed.model(**{k: v.cuda() for k, v in scenario.example_inputs(8).items()})
        assert logits.shape == (8, 10) and logits.device.type == "cuda"
