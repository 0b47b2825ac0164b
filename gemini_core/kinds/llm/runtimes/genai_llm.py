"""ONNX Runtime GenAI: the model saved as safetensors, exported by GenAI's own model builder
(``python -m onnxruntime_genai.models.builder``, float32 weights, or its int4 MatMulNBits at the
point's group size when the point has 4-bit weights: the builder quantizes again, on its own grid),
then run by GenAI's generator (its greedy search, its KV cache) with ``intra_op_num_threads``."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from gemini_core.errors import CheckpointError, ConfigError
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings, Runner, kv_elements_per_position


def _require():
    try:
        import onnxruntime_genai as og
    except ImportError as exc:
        raise ConfigError(f"onnxruntime-genai is not installed ({exc}): pip install onnxruntime-genai") from None
    return og


def build(model, tokenizer, folder: Path, settings: LLMRunSettings) -> Path:
    """GenAI's export of ``model`` into ``folder`` (its builder is a command-line tool)."""
    folder = Path(folder)
    hf = folder / "hf"
    model.save_pretrained(hf, safe_serialization=True)
    tokenizer.save_pretrained(hf)
    out = folder / "genai"
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(out),
               "-e", "cpu", "-c", str(folder / "cache")]
    if settings.weight_bits == 4:
        command += ["-p", "int4", "--extra_options", f"block_size={settings.group_size or 32}",
                    "is_symmetric=true"]
    else:
        command += ["-p", "fp32"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not (out / "genai_config.json").is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CheckpointError(f"the onnxruntime-genai builder failed: {tail[0]}")
    config_path = out / "genai_config.json"
    config = json.loads(config_path.read_text())
    config["model"]["decoder"]["session_options"]["intra_op_num_threads"] = settings.threads
    config_path.write_text(json.dumps(config, indent=2))
    return out


def matmul_bytes(onnx_path: Path) -> int:
    """Bytes of the initializers the MatMul / MatMulNBits nodes read (the weights of one token)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    used = {name for node in graph.node if node.op_type in ("MatMul", "MatMulNBits") for name in node.input[1:]}
    total = 0
    for init in graph.initializer:
        if init.name in used:
            ext = {e.key: e.value for e in init.external_data}
            total += int(ext["length"]) if "length" in ext else len(init.raw_data)
    return total


class GenAIRunner(Runner):
    execution = "onnxruntime-genai"

    def __init__(self, folder: Path, config, settings: LLMRunSettings, workdir=None):
        self.og = _require()
        self.folder, self.threads, self._workdir = Path(folder), settings.threads, workdir
        self.model = self.og.Model(str(folder))
        self.max_length = max(settings.context_len, settings.prefill_tokens, settings.prompt_tokens) + \
            settings.new_tokens + 8
        self.weight_bytes = matmul_bytes(self.folder / "model.onnx")
        self.kv_elements = kv_elements_per_position(config)
        self.generator = None

    def _generator(self):
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=self.max_length, do_sample=False)
        return self.og.Generator(self.model, params)

    def logits(self, ids):
        generator = self._generator()
        generator.append_tokens(ids.numpy().astype(np.int32))
        return torch.from_numpy(np.array(generator.get_output("logits"))[0]).float()

    def start(self, prompt):
        self.generator = self._generator()
        self.generator.append_tokens(prompt.numpy().astype(np.int32))
        self.generator.generate_next_token()
        return int(self.generator.get_next_tokens()[0])

    def step(self, token):
        self.generator.generate_next_token()  # greedy: the token chosen last time is already appended
        return int(self.generator.get_next_tokens()[0])

    def weight_bytes_per_token(self):
        return self.weight_bytes

    def kv_bytes_per_position(self):
        return self.kv_elements * 4

    def describe(self):
        return {"execution": self.execution, "threads": self.threads, "kv_cache_precision": "f32"}


def load(model, tokenizer, settings: LLMRunSettings) -> GenAIRunner:
    _require()
    workdir = tempfile.TemporaryDirectory(prefix="gemini-genai-")
    folder = build(model, tokenizer, Path(workdir.name), settings)
    return GenAIRunner(folder, model.config, settings, workdir)
