"""``dense-int8``: a point stored at 4 bits (or fewer) computed by torch's int8 kernels, the file unchanged."""
import dataclasses

import pytest
import torch

from gemini_core.compress import compress
from gemini_core.config import EXECUTIONS, CompressionConfig
from gemini_core.errors import ConfigError
from gemini_core.measure import measure_point
from gemini_core.runtimes.torch_kernels import int8_linear


def _outputs(model, scenario, n=64):
    with torch.no_grad():
        return model(**scenario.splits.test.first(n).inputs).float()


def test_int8_linear_is_per_channel_int8_of_the_weights():
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 16)
    layer = int8_linear(linear)
    weight = layer.weight()
    assert weight.dtype == torch.qint8 and (weight.q_per_channel_zero_points() == 0).all()
    step = linear.weight.detach().abs().amax(dim=1, keepdim=True) / 127
    assert ((weight.dequantize() - linear.weight.detach()).abs() <= step / 2 + 1e-7).all()
    x = torch.randn(3, 48)
    assert (layer(x) - linear(x)).abs().max() < 0.05 * linear(x).abs().max()


def test_4_bit_storage_runs_on_int8_kernels_and_ships_the_4_bit_file(digits):
    scenario, baseline = digits
    stored = CompressionConfig(bits=4, granularity="group-32")
    dense = compress(baseline.model, stored, scenario)
    int8 = compress(baseline.model, dataclasses.replace(stored, execution="dense-int8"), scenario)
    assert "dense-int8" in EXECUTIONS
    assert int8.storage() == dense.storage()  # the file is the 4-bit one: only the compute differs
    linears = [n for n, m in dense.model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(int8.layer_backends[n].startswith("int8-dynamic") for n in linears)
    assert not any(isinstance(m, torch.nn.Linear) and not hasattr(m, "_packed_params")
                   for m in int8.model.modules())
    ref, out = _outputs(dense.model, scenario), _outputs(int8.model, scenario)
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.97
    record = measure_point(int8, scenario, batch_size=16)
    assert record["size_bytes"] == len(dense.storage())
    assert record["weight_memory_bytes"] > 0 and record["backend"] == int8.backend


def test_a_skipped_layer_stays_fp32_and_the_gpu_is_refused(digits):
    scenario, baseline = digits
    dense = compress(baseline.model, CompressionConfig(bits=4, granularity="group-32"), scenario)
    first = next(n for n, m in dense.model.named_modules() if isinstance(m, torch.nn.Linear))
    config = CompressionConfig(bits=4, granularity="group-32", execution="dense-int8",
                               layer_overrides=[{"pattern": first, "skip": True}])
    compressed = compress(baseline.model, config, scenario)
    assert compressed.layer_backends[first] == "dense-fp32"
    from gemini_core.runtimes.torch_kernels import build_execution_model

    with pytest.raises(ConfigError, match="CPU"):
        build_execution_model(compressed.stored_model, config, compressed.quantized, torch.device("meta"))


def test_a_dense_int8_export_ships_the_4_bit_file_and_reloads_on_int8_kernels(digits, tmp_path):
    from gemini_core.checkpoint.format import MODEL_FILE
    from gemini_core.checkpoint.load import load_export
    from gemini_core.kinds.classifier.export import export_compressed

    scenario, baseline = digits
    compressed = compress(baseline.model, CompressionConfig(bits=4, granularity="group-32", execution="dense-int8"),
                          scenario)
    path = export_compressed(compressed, scenario, baseline, tmp_path / "int8", measure=False)
    assert (path / MODEL_FILE).read_bytes() == compressed.storage()  # 4-bit codes, not int8
    loaded = load_export(path)  # no scenario needed: the int8 kernels are built from the file alone
    assert loaded.backend == compressed.backend and "int8-dynamic" in loaded.backend
    assert torch.equal(_outputs(loaded.model, scenario), _outputs(compressed.model, scenario))
