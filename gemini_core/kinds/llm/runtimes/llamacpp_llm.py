"""llama.cpp (through llama-cpp-python): the point written as GGUF by the product's own writer, its
4-bit grid kept as q4_0 blocks (symmetric) or q4_1 blocks (asymmetric), then decoded by llama.cpp's
CPU backend (its KV cache in f16, its fused flash attention) with ``settings.threads`` threads. On x86
llama.cpp repacks q4_0 weights into its interleaved layout at load, the format its AVX2 / AVX-512
kernels read fastest.

llama-cpp-python has no binary wheel on PyPI: ``pip install llama-cpp-python`` compiles llama.cpp
(a C/C++ compiler and several minutes). It is optional; without it this execution says so in one line.
"""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm.gguf_check import check_gguf
from gemini_core.kinds.llm.gguf_export import export_gguf, grid_type
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings, Runner

GGUF_NAME = "model.gguf"
LOOKUP_ONLY = "token_embd.weight"  # read one row per token unless it is also the output head


def require():
    try:
        import llama_cpp
    except ImportError as exc:
        raise ConfigError(f"llama.cpp is not installed ({exc}): pip install llama-cpp-python "
                          "(it compiles llama.cpp: a C/C++ compiler and several minutes)") from None
    return llama_cpp


def gguf_type_for(model, settings: LLMRunSettings) -> str:
    """The GGUF block type that holds the point's weights (``gguf_export.grid_type``); a grid llama.cpp has
    no block type for is one line rather than a silently slow float file."""
    grid = settings.grid
    bits, group = (grid.bits, grid.group_size) if grid else (None, None)
    if bits not in (None, 4, 8):
        raise ConfigError(f"llama.cpp runs 4-bit (q4_0 / q4_1) and 8-bit (q8_0) points here, not {bits}-bit ones")
    if bits == 4 and group is not None and group % 32:
        raise ConfigError(f"GGUF's 4-bit blocks hold groups of 32 weights or a multiple, not {group}")
    return grid_type(model, grid)


def read_checked(path: Path):
    """The file checked in Python (``gguf_check``: header, tensors, Llama sizes, tokenizer) and parsed by gguf-py
    before llama.cpp's C++ parser sees it: a colleague's export is untrusted. One line (``CheckpointError``) for
    anything that is not a Llama GGUF of the types the product writes; returns gguf-py's reader."""
    return check_gguf(path).reader


def gguf_tensor_bytes(reader) -> dict:
    """{tensor name: (GGML type name, bytes)} as written in the file."""
    return {t.name: (t.tensor_type.name, int(t.n_bytes)) for t in reader.tensors}


def gguf_kv_elements_per_position(reader) -> int:
    """Key and value elements one position adds to the cache, from the file's own metadata (checked by
    ``read_checked``; the KV head count defaults to the head count, as in llama.cpp)."""
    def field(name, default=None):
        value = reader.fields.get(f"llama.{name}")
        return default if value is None else int(value.contents())

    heads = field("attention.head_count")
    head_dim = field("attention.key_length", field("embedding_length") // heads)
    return 2 * field("block_count") * field("attention.head_count_kv", heads) * head_dim


class LlamaCppRunner(Runner):
    execution = "llama.cpp"

    def __init__(self, path: Path, settings: LLMRunSettings, workdir=None):
        llama_cpp = require()
        self.path, self.threads, self._workdir = Path(path), settings.threads, workdir
        reader = read_checked(self.path)
        self.n_ctx = max(settings.context_len, settings.prefill_tokens,
                         settings.prompt_tokens + settings.new_tokens) + 8
        # n_batch = n_ctx: one window is one batch, and llama-cpp-python sizes its score rows by n_batch
        self.llm = llama_cpp.Llama(model_path=str(self.path), n_threads=settings.threads,
                                   n_threads_batch=settings.threads, n_ctx=self.n_ctx, n_batch=self.n_ctx,
                                   n_ubatch=self.n_ctx, logits_all=False, verbose=False,
                                   flash_attn=True)  # its fused attention: 1.16x decode on SmolLM2 here
        self.vocab = self.llm.n_vocab()
        tensors = gguf_tensor_bytes(reader)
        skip = LOOKUP_ONLY if "output.weight" in tensors else None
        self.weight_bytes = sum(size for name, (_kind, size) in tensors.items() if name != skip)
        self.tensor_types = dict(Counter(kind for kind, _size in tensors.values()))
        self.kv_elements = gguf_kv_elements_per_position(reader)
        self.system_info = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
        self.version = getattr(llama_cpp, "__version__", "?")

    def _last_logits(self) -> np.ndarray:
        return np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(self.vocab,))

    def _check_room(self, n: int) -> None:
        if self.llm.n_tokens + n > self.n_ctx:
            raise ConfigError(f"{self.llm.n_tokens + n} tokens do not fit llama.cpp's context of {self.n_ctx}")

    def logits(self, ids):
        n = ids.numel()
        self.llm.reset()
        self._check_room(n)
        self.llm._logits_all = True  # every position's logits, for this window only
        try:
            self.llm.eval(ids.tolist())
            return torch.from_numpy(np.array(self.llm.scores[:n], dtype=np.float32))
        finally:
            self.llm._logits_all = False

    def start(self, prompt):
        self.llm.reset()
        self._check_room(prompt.numel())
        self.llm.eval(prompt.tolist())
        return int(self._last_logits().argmax())

    def step(self, token):
        self._check_room(1)
        self.llm.eval([int(token)])
        return int(self._last_logits().argmax())

    def weight_bytes_per_token(self):
        return self.weight_bytes

    def kv_bytes_per_position(self):
        return self.kv_elements * 2  # llama.cpp's default KV cache type is f16

    def describe(self):
        return {"execution": self.execution, "threads": self.threads, "kv_cache_precision": "f16",
                "gguf_tensor_types": self.tensor_types, "llama_cpp_python": self.version,
                "llama_cpp_system_info": self.system_info}


def load(model, tokenizer, settings: LLMRunSettings) -> LlamaCppRunner:
    require()
    qtype = gguf_type_for(model, settings)
    workdir = tempfile.TemporaryDirectory(prefix="gemini-llamacpp-")
    path = export_gguf(model, tokenizer, Path(workdir.name) / GGUF_NAME, qtype)
    return LlamaCppRunner(path, settings, workdir)
