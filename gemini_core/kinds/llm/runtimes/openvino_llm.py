"""OpenVINO execution of a causal LM: converted stateful (ov_convert), weights stored on the product's
grid (ov_weights), compiled for the CPU with a thread count and one stream; greedy decoding drives
the infer request directly, the KV cache staying inside the plugin between calls."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from gemini_core.errors import CheckpointError
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings, Runner, kv_elements_per_position
from gemini_core.kinds.llm.runtimes.ov_convert import convert_stateful
from gemini_core.kinds.llm.runtimes.ov_weights import compress_matmul_weights

IR_NAME = "openvino_model.xml"
META_NAME = "gemini_openvino.json"
_BEAM = np.zeros(1, np.int32)  # one sequence: the cache is read as it is
_SIZES = {"f32": 4, "f16": 2, "bf16": 2, "u8": 1, "i8": 1, "u4": 0.5, "i4": 0.5}


def _upstream_constants(node, seen: set) -> int:
    """Bytes of every constant feeding ``node`` (a weight and its decompression scales)."""
    total, stack = 0, [node]
    while stack:
        current = stack.pop()
        if current.get_type_name() == "Parameter":
            continue
        if current.get_type_name() == "Constant":
            if current.get_friendly_name() not in seen:
                seen.add(current.get_friendly_name())
                total += current.get_byte_size()
            continue
        stack.extend(v.get_node() for v in current.input_values())
    return total


def matmul_weight_bytes(ov_model) -> int:
    seen: set = set()
    return sum(_upstream_constants(op.input_value(1).get_node(), seen)
               for op in ov_model.get_ordered_ops() if op.get_type_name() == "MatMul")


class OpenVINORunner(Runner):
    execution = "openvino"

    def __init__(self, ov_model, meta: dict, settings: LLMRunSettings):
        import openvino as ov

        self.meta, self.threads = meta, settings.threads
        config = {"INFERENCE_NUM_THREADS": str(settings.threads), "NUM_STREAMS": "1",
                  "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if settings.kv_cache_precision:
            config["KV_CACHE_PRECISION"] = settings.kv_cache_precision
        self.weight_bytes = matmul_weight_bytes(ov_model)
        start = time.perf_counter()
        self.compiled = ov.Core().compile_model(ov_model, "CPU", config)
        self.compile_s = time.perf_counter() - start
        self.request = self.compiled.create_infer_request()
        kv_type = self.compiled.get_property("KV_CACHE_PRECISION")  # an ov.Type: "u8", "f16", "f32"
        self.kv_type = kv_type.get_type_name() if hasattr(kv_type, "get_type_name") else str(kv_type)
        self.position = 0

    def _run(self, ids: np.ndarray, logits_positions: np.ndarray) -> np.ndarray:
        n = ids.shape[-1]
        out = self.request.infer({
            "input_ids": ids.reshape(1, n), "attention_mask": np.ones((1, self.position + n), np.int64),
            "position_ids": np.arange(self.position, self.position + n, dtype=np.int64).reshape(1, n),
            "logits_positions": logits_positions, "beam_idx": _BEAM})
        self.position += n
        return out["logits"][0]

    def logits(self, ids):
        self.request.reset_state()
        self.position = 0
        n = ids.numel()
        return torch.from_numpy(self._run(ids.numpy().astype(np.int64), np.arange(n, dtype=np.int64)).copy())

    def start(self, prompt):
        self.request.reset_state()
        self.position = 0
        return int(self._run(prompt.numpy().astype(np.int64), np.array([prompt.numel() - 1]))[-1].argmax())

    def step(self, token):
        return int(self._run(np.array([token], np.int64), np.array([0]))[-1].argmax())

    def weight_bytes_per_token(self):
        return self.weight_bytes

    def kv_bytes_per_position(self):
        return int(self.meta["kv_elements_per_position"] * _SIZES.get(self.kv_type.lower(), 4))

    def describe(self):
        return {"execution": self.execution, "threads": self.threads, "kv_cache_precision": self.kv_type,
                "compile_seconds": round(self.compile_s, 2), **self.meta.get("weights", {})}


def convert_compressed(model, settings: LLMRunSettings) -> tuple[object, dict]:
    """(ov.Model with the point's weights stored as codes + scales, metadata)."""
    start = time.perf_counter()
    ov_model = convert_stateful(model)
    weights = {"weight_bits": None, "head_bits": None}
    if settings.weight_bits is not None or settings.head_bits is not None:
        weights = compress_matmul_weights(ov_model, settings.grid, head_bits=settings.head_bits,
                                          head_group=settings.head_group, vocab_size=model.config.vocab_size)
    meta = {"kv_elements_per_position": kv_elements_per_position(model.config), "weights": weights,
            "vocab_size": model.config.vocab_size, "convert_seconds": round(time.perf_counter() - start, 2)}
    return ov_model, meta


def load(model, _tokenizer, settings: LLMRunSettings) -> OpenVINORunner:
    ov_model, meta = convert_compressed(model, settings)
    return OpenVINORunner(ov_model, meta, settings)


def export_ir(model, tokenizer, folder, settings: LLMRunSettings) -> Path:
    """An OpenVINO IR folder a user can run: openvino_model.xml/.bin (compressed weights), the
    tokenizer files and our metadata (written last: it marks completion)."""
    import openvino as ov

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ov_model, meta = convert_compressed(model, settings)
    ov.save_model(ov_model, str(folder / IR_NAME), compress_to_fp16=False)
    tokenizer.save_pretrained(folder)
    model.config.save_pretrained(folder)
    meta["inputs"] = ["input_ids", "attention_mask", "position_ids", "logits_positions", "beam_idx"]
    (folder / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return folder


def load_ir(folder, settings: LLMRunSettings) -> OpenVINORunner:
    import openvino as ov

    folder = Path(folder)
    if not (folder / META_NAME).is_file() or not (folder / IR_NAME).is_file():
        raise CheckpointError(f"{folder} is not an OpenVINO LLM export (no {IR_NAME} with {META_NAME})")
    meta = json.loads((folder / META_NAME).read_text())
    return OpenVINORunner(ov.Core().read_model(str(folder / IR_NAME)), meta, settings)
