"""A Llama-family causal LM converted to OpenVINO with ``openvino.convert_model``, stateful.

optimum-intel 2.2 (the documented exporter) does not import with transformers 5.24: it needs
transformers < 5.6 (``VisionRotaryEmbedding`` is gone from qwen2_vl). So the torch module is
converted here directly, the way optimum-intel does it: a wrapper takes the key/value cache as
explicit tensors (a ``DynamicCache`` is rebuilt inside), the graph is traced, and OpenVINO's
make-stateful transformation turns each past/present pair into an internal state, so the CPU
plugin keeps the KV cache between calls (in its own precision: ``KV_CACHE_PRECISION``).

Inputs: ``input_ids``, ``attention_mask`` (past + new), ``position_ids`` and ``logits_positions``
(the positions whose logits are computed: the last one while generating, every one for perplexity,
so a prefill does not pay for 49,152-way logits at every position).
"""
from __future__ import annotations

import torch
from torch import nn

from gemini_core.errors import ConfigError
from gemini_core.llm.runtimes.base import cache_keyword, returned_cache

INPUTS = ("input_ids", "attention_mask", "position_ids", "logits_positions")


class _CacheAsTensors(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.layers = model.config.num_hidden_layers

    def forward(self, input_ids, attention_mask, position_ids, logits_positions, *past):
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for i, layer in enumerate(cache.layers):  # filled directly: update() would concat onto an empty
            layer.keys, layer.values = past[2 * i], past[2 * i + 1]  # 1-D tensor, which OpenVINO rejects
            layer.device, layer.dtype, layer.is_initialized = past[0].device, past[0].dtype, True
        out = self.model.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               use_cache=True, **{cache_keyword(self.model.model.forward): cache})
        hidden = out.last_hidden_state.index_select(1, logits_positions)
        logits = self.model.lm_head(hidden)
        presents = []
        for layer in returned_cache(out).layers:
            presents += [layer.keys, layer.values]
        return (logits, *presents)


def kv_shape(config) -> tuple[int, int]:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_key_value_heads, head_dim


def convert_stateful(model):
    """An ``openvino.Model`` of ``model`` (float weights as they are), with the KV cache as state."""
    import openvino as ov
    from openvino._offline_transformations import apply_make_stateful_transformation

    config = model.config
    if getattr(config, "model_type", None) not in ("llama", "mistral", "qwen2"):
        raise ConfigError(f"the OpenVINO LLM export supports Llama-like models, not {config.model_type!r}")
    layers = config.num_hidden_layers
    kv_heads, head_dim = kv_shape(config)
    past_len, new_len = 3, 4
    example = {
        "input_ids": torch.ones(1, new_len, dtype=torch.long),
        "attention_mask": torch.ones(1, past_len + new_len, dtype=torch.long),
        "position_ids": torch.arange(past_len, past_len + new_len).unsqueeze(0),
        "logits_positions": torch.arange(new_len),
    }
    past = [torch.zeros(1, kv_heads, past_len, head_dim) for _ in range(2 * layers)]
    wrapper = _CacheAsTensors(model).eval()
    shapes = [ov.PartialShape([1, -1])] * 3 + [ov.PartialShape([-1])] + \
        [ov.PartialShape([1, kv_heads, -1, head_dim])] * (2 * layers)
    types = [ov.Type.i64] * 4 + [ov.Type.f32] * (2 * layers)
    with torch.no_grad():
        ov_model = ov.convert_model(wrapper, example_input=(*example.values(), *past),
                                    input=list(zip(shapes, types)))
    names = list(INPUTS) + [f"past.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    for port, name in zip(ov_model.inputs, names):
        port.get_tensor().set_names({name})
    out_names = ["logits"] + [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    for port, name in zip(ov_model.outputs, out_names):
        port.get_tensor().set_names({name})
    apply_make_stateful_transformation(ov_model, {f"past.{i}.{kv}": f"present.{i}.{kv}"
                                                  for i in range(layers) for kv in ("key", "value")})
    return ov_model
