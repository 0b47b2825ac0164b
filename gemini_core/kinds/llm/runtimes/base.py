"""What every LLM execution provides, and the settings one measurement uses.

A runner holds one model loaded in one runtime. It answers full-window logits (for perplexity) and
greedy decoding one token at a time (``start`` = prefill of a prompt, ``step`` = one new token), so
time to first token and per-token decode time are measured around the runtime's own calls, the
same way for every runtime. It also says how many bytes it reads per generated token.
"""
from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from types import SimpleNamespace

import torch

from gemini_core.techniques.grid import QuantGrid


@dataclass
class LLMRunSettings:
    """One measurement's settings (every figure is reported with them)."""

    threads: int = 2
    prompt_tokens: int = 16          # the short fixed prompt decoding starts from
    new_tokens: int = 64             # greedy tokens generated after it, always this many (no EOS stop)
    prefill_tokens: int = 128        # prompt length at which prefill speed is stated
    repeats: int = 3                 # timed repeats (median reported), after one warm-up
    context_len: int = 512           # perplexity window
    weight_bits: int | None = None   # the point's weight grid (None: float weights)
    group_size: int | None = None
    head_bits: int | None = 8        # a float LM head in OpenVINO (None: kept float); one on the grid stays
    head_group: int | None = None
    kv_cache_precision: str | None = None  # OpenVINO KV cache element type (u8, f16, f32); None: plugin default
    ppl_tolerance: float = 0.15      # auto: relative perplexity increase allowed over the reference

    @property
    def grid(self) -> QuantGrid | None:
        """The point's weight grid (bits and groups; symmetric or not is read from the weights), None for float."""
        return QuantGrid.coerce(self.weight_bits, self.group_size)

    def to_dict(self) -> dict:
        return asdict(self)


class Runner:
    """Base of the per-runtime runners."""

    execution = "?"

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """[tokens, vocab] logits of one window, from an empty cache."""
        raise NotImplementedError

    def start(self, prompt: torch.Tensor) -> int:
        """Prefill ``prompt`` (1-D ids) from an empty cache; the greedy next token."""
        raise NotImplementedError

    def step(self, token: int) -> int:
        """Feed one token; the greedy next token."""
        raise NotImplementedError

    def weight_bytes_per_token(self) -> int:
        """Bytes of weights read for one decoded token (every matrix the token passes through)."""
        raise NotImplementedError

    def kv_bytes_per_position(self) -> int:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"execution": self.execution}

    def as_model(self):
        """A callable with the transformers signature ``model(input_ids=...).logits`` for the metrics."""

        def call(input_ids, **_):
            return SimpleNamespace(logits=self.logits(input_ids.reshape(-1)).unsqueeze(0))

        return call


def kv_elements_per_position(config) -> int:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim


def cache_keyword(forward) -> str:
    """transformers 5.24 names the KV cache argument ``cache`` (``past_key_values`` is deprecated and
    goes in 5.40); earlier versions only know ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def returned_cache(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
