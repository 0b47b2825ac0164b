"""A Llama-family causal LM converted to OpenVINO with ``openvino.convert_model``, stateful.

optimum-intel 2.2 (the documented exporter) does not import with transformers 5.24: it needs
transformers < 5.6 (``VisionRotaryEmbedding`` is gone from qwen2_vl). So the torch module is
converted here directly, the way optimum-intel does it: a wrapper takes the key/value cache as
explicit tensors (a ``DynamicCache`` is rebuilt inside), the graph is traced, and OpenVINO's
make-stateful transformation turns each past/present pair into an internal state, so the CPU
plugin keeps the KV cache between calls (in its own precision: ``KV_CACHE_PRECISION``).

Inputs: ``input_ids``, ``attention_mask`` (past + new), ``position_ids``, ``logits_positions``
(the positions whose logits are computed: the last one while generating, every one for perplexity,
so a prefill does not pay for 49,152-way logits at every position) and ``beam_idx`` (always [0]).

The graph is shaped so that the CPU plugin fuses each layer's cache read, concatenation and attention
into one stateful attention node (its StatefulSDPAFusion, which optimum-intel's exports also meet);
without it every step ran ~60 extra nodes and copied the cache (int4 decoding at 21% of the
bandwidth limit). Three things the fusion needs: the cache read goes through a ``Gather`` on
``beam_idx`` (as optimum-intel's exports do) with a dynamic batch; nothing but that Gather reads the
cache (transformers' causal mask and ``repeat_kv`` take the past length from the cache's shape, so the
mask is built here, additive in float, from ``attention_mask`` and ``position_ids`` and the key/value heads are repeated
to the mask's length, in ``_ov_attention``); and the attention is one ``scaled_dot_product_attention``.
It also meets the plugin's rotary-embedding fusion (one RoPE node per query and key): the
traced ``rotate_half`` needs its -1 as a plain constant (``_fold_constant_converts``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import AttentionInterface

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm.runtimes.base import cache_keyword, returned_cache

INPUTS = ("input_ids", "attention_mask", "position_ids", "logits_positions")
ATTENTION = "gemini_openvino_sdpa"


def _ov_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **_):
    """SDPA with the key/value heads repeated to the 4-D mask's length (not the cache's shape)."""
    kv_len, heads, dim = attention_mask.shape[-1], key.shape[1], key.shape[3]
    rep = module.num_key_value_groups
    key = key[:, :, None].expand(-1, heads, rep, kv_len, dim).reshape(-1, heads * rep, kv_len, dim)
    value = value[:, :, None].expand(-1, heads, rep, kv_len, dim).reshape(-1, heads * rep, kv_len, dim)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                           scale=scaling)
    return out.transpose(1, 2).contiguous(), None


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
        keys = torch.arange(attention_mask.shape[1], device=input_ids.device)
        allowed = (keys[None, :] <= position_ids[0][:, None]) & attention_mask[0].bool()[None, :]
        # additive float mask (the plugin's fused attention ran ~4% slower per step with a boolean one);
        # float16's minimum, as optimum-intel's exports, so a lower-precision plugin does not make it -inf
        mask = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float16).min)
        out = self.model.model(input_ids=input_ids, attention_mask=mask[None, None], position_ids=position_ids,
                               cache_position=position_ids[0], use_cache=True,
                               **{cache_keyword(self.model.model.forward): cache})
        hidden = out.last_hidden_state.index_select(1, logits_positions)
        logits = self.model.lm_head(hidden)
        presents = []
        for layer in returned_cache(out).layers:
            presents += [layer.keys, layer.values]
        return (logits, *presents)


def _gather_cache_on_beam_idx(ov_model, layers: int) -> None:
    """Every past input read through ``Gather(past, beam_idx, 0)``, the form the CPU plugin fuses."""
    import openvino as ov
    from openvino import opset13

    beam = opset13.parameter([-1], ov.Type.i32, name="beam_idx")
    beam.output(0).get_tensor().set_names({"beam_idx"})
    axis = opset13.constant(np.int64(0))
    past = {f"past.{i}.{kv}" for i in range(layers) for kv in ("key", "value")}
    for parameter in ov_model.get_parameters():
        if parameter.output(0).get_any_name() in past:
            readers = list(parameter.output(0).get_target_inputs())
            gathered = opset13.gather(parameter.output(0), beam, axis)
            for reader in readers:
                reader.replace_source_output(gathered.output(0))
    ov_model.add_parameters([beam])
    ov_model.validate_nodes_and_infer_types()


def _zero_initial_states(ov_model) -> None:
    """Each cache state starts as zeros of shape [batch of input_ids, heads, 0, head_dim], computed in
    the graph (as optimum-intel's ``build_state_initializer`` does): the plugin's fused stateful
    attention reads its state's initial value from this input and fails to compile without it."""
    from openvino import opset13

    batch = opset13.gather(opset13.shape_of(ov_model.input("input_ids"), output_type="i64"),
                           opset13.constant(np.array([0], np.int64)), opset13.constant(np.int64(0)))
    for op in ov_model.get_ops():
        if op.get_type_name() == "ReadValue":
            dims = [opset13.constant(np.array([d.get_min_length()], np.int64))
                    for d in op.get_output_partial_shape(0)]
            dims[0] = batch
            zero = opset13.constant(np.array(0, dtype=op.get_output_element_type(0).to_dtype()))
            op.set_arguments([opset13.broadcast(zero, opset13.concat(dims, axis=0))])
    ov_model.validate_nodes_and_infer_types()


def _fold_constant_converts(ov_model) -> None:
    """Each ``Convert`` of a scalar or vector constant replaced by the converted constant.

    The PyTorch frontend marks such a Convert (``aten::neg``'s -1, an i32 constant converted to f32)
    as not to be folded, because a Convert of a constant feeding a Multiply looks like a weight's
    dequantization; the CPU plugin's rotary-embedding fusion (``RoPEFusionGPTNEOX``) then does not
    see ``x * -1`` in ``rotate_half`` and each layer's rotary embedding runs as ~10 separate nodes.
    An IR written to disk and read back loses the mark (which is why optimum-intel's exports fuse).
    Matrices (rank >= 2: weights) are left as they are."""
    import openvino as ov
    from openvino import opset13

    plain = (ov.Type.f32, ov.Type.i32, ov.Type.i64)  # numpy holds these exactly (not bf16, not 4-bit codes)
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() != "Convert" or op.get_output_element_type(0) not in plain:
            continue
        source = op.input_value(0).get_node()
        if (source.get_type_name() != "Constant" or source.get_output_element_type(0) not in plain
                or len(source.get_output_partial_shape(0)) > 1):
            continue
        data = source.get_data().astype(op.get_output_element_type(0).to_dtype())
        folded = opset13.constant(data)
        folded.set_friendly_name(op.get_friendly_name())
        for target in list(op.output(0).get_target_inputs()):
            target.replace_source_output(folded.output(0))
    ov_model.validate_nodes_and_infer_types()


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
        [ov.PartialShape([-1, kv_heads, -1, head_dim])] * (2 * layers)
    types = [ov.Type.i64] * 4 + [ov.Type.f32] * (2 * layers)
    AttentionInterface.register(ATTENTION, _ov_attention)
    previous = model.config._attn_implementation
    model.config._attn_implementation = ATTENTION
    try:
        with torch.no_grad():
            ov_model = ov.convert_model(wrapper, example_input=(*example.values(), *past),
                                        input=list(zip(shapes, types)))
    finally:
        model.config._attn_implementation = previous
    names = list(INPUTS) + [f"past.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    for port, name in zip(ov_model.inputs, names):
        port.get_tensor().set_names({name})
    out_names = ["logits"] + [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    for port, name in zip(ov_model.outputs, out_names):
        port.get_tensor().set_names({name})
    _fold_constant_converts(ov_model)
    _gather_cache_on_beam_idx(ov_model, layers)
    apply_make_stateful_transformation(ov_model, {f"past.{i}.{kv}": f"present.{i}.{kv}"
                                                  for i in range(layers) for kv in ("key", "value")})
    _zero_initial_states(ov_model)
    return ov_model
