"""``onnx/``: the dynamo-exported graph, checked against torch in onnxruntime."""
from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
from torch import nn

from gemini_core.checkpoint.format import ONNX_CHECK_BATCH, _quiet
from gemini_core.errors import GeminiError


def _dynamic_shapes(example: dict[str, torch.Tensor], arch: dict) -> dict:
    from torch.export import Dim

    batch = Dim("batch")
    sequence = None
    if arch.get("model") == "hf":
        max_pos = int((arch.get("config") or {}).get("max_position_embeddings", 512))
        sequence = Dim("sequence", max=max_pos)
    shapes = {}
    for name, tensor in example.items():
        dims = {0: batch}
        if sequence is not None and tensor.dim() == 2 and not tensor.is_floating_point():
            dims[1] = sequence
        shapes[name] = dims
    return shapes


def write_onnx(stored_model: nn.Module, folder: Path, scenario, arch: dict, int8: bool = False) -> dict:
    """``onnx/model.onnx`` (dynamo exporter, dynamic batch/sequence) checked against torch in onnxruntime."""
    import numpy as np
    import onnxruntime as ort

    folder.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(stored_model).float().eval()
    test = scenario.splits.test
    example = test.first(2).inputs
    names = list(example)
    started = time.perf_counter()
    try:
        with _quiet():
            torch.onnx.export(model, (), str(folder / "model.onnx"), kwargs=example, dynamo=True,
                              dynamic_shapes=_dynamic_shapes(example, arch), input_names=names,
                              output_names=["logits"], external_data=False, verbose=False, report=False)
    except OSError:
        raise
    except Exception as exc:
        raise GeminiError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    seconds = time.perf_counter() - started
    batch = test.first(min(ONNX_CHECK_BATCH, len(test))).inputs
    with torch.no_grad():
        reference = model(**batch).float().numpy()
    info = {"file": "onnx/model.onnx", "inputs": names, "outputs": ["logits"], "export_seconds": seconds,
            "dynamic_axes": {n: ["batch"] + (["sequence"] if d.get(1) is not None else [])
                             for n, d in _dynamic_shapes(example, arch).items()},
            "check_batch": int(reference.shape[0])}
    feed = {k: v.numpy() for k, v in batch.items()}
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, feed)[0]
    info["max_abs_diff_vs_torch"] = float(np.abs(out - reference).max())
    info["argmax_agreement"] = float((out.argmax(-1) == reference.argmax(-1)).mean())
    info["onnxruntime"] = ort.__version__
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet():
            quantize_dynamic(str(folder / "model.onnx"), str(folder / "model.int8.onnx"),
                             weight_type=QuantType.QInt8)
        session8 = ort.InferenceSession(str(folder / "model.int8.onnx"), providers=["CPUExecutionProvider"])
        out8 = session8.run(None, feed)[0]
        info["int8"] = {"file": "onnx/model.int8.onnx", "max_abs_diff_vs_torch": float(np.abs(out8 - reference).max()),
                        "argmax_agreement": float((out8.argmax(-1) == reference.argmax(-1)).mean()),
                        "method": "onnxruntime.quantization.quantize_dynamic (QInt8 weights)"}
    return info
