"""One LLM point: what to do to the model (``LLMPointConfig``), doing it (``compress_llm``) and measuring
the result (``measure_llm_point``, the ONE function every LLM figure of a sweep, an export and ``evaluate``
comes from; runtimes plug in through its ``execution`` argument).

Order of the techniques in one point: structured pruning, then one-shot pruning, then recovery (fine-tuning
or distillation to the uncompressed model), then weight quantization.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import BeforeValidator, Field

from gemini_core.device import cpu_flags, cpu_model
from gemini_core.errors import Cancelled, ConfigError
from gemini_core.kinds.llm import distill, metrics, prune, quantize, structured, text_data
from gemini_core.kinds.llm.calibrate import linear_layers
from gemini_core.kinds.llm.compressed_export import export_compressed
from gemini_core.kinds.llm.runtimes import LLMRunSettings, measure_on_runtime
from gemini_core.kinds.llm.runtimes import names as runtime_names
from gemini_core.kinds.llm.source import save_hf_folder
from gemini_core.settings import Number, OneOf, Says, Whole, settings
from gemini_core.techniques.grid import QuantGrid

QUANT_METHODS = ("none",) + quantize.METHODS
PRUNE_METHODS = ("none",) + prune.METHODS
RECOVERIES = ("none",) + distill.MODES
PATTERNS = ("unstructured", "2:4")
# Where one LLM point runs. Only torch here; runtimes (OpenVINO, ONNX Runtime GenAI) join this tuple and the
# branch in ``measure_llm_point``.
# "torch" is measured here; the others (and "auto") by llm.runtimes on their own runtime.
EXECUTIONS = tuple(runtime_names())


Share = Annotated[Number, Field(ge=0, lt=1)]  # a share of channels or heads removed


@settings
class LLMPointConfig:
    quant_method: Annotated[Literal[QUANT_METHODS], Field(title="quantization method")] = "none"
    bits: Whole = 32
    # None: one scale per output row (per-channel); any spelling ("64", "g64", "group-64") is stored as the number
    group_size: Annotated[int | None, BeforeValidator(quantize.group_size_of)] = None
    prune_method: Annotated[Literal[PRUNE_METHODS], Field(title="pruning method")] = "none"
    sparsity: Number = 0.0
    pattern: Literal[PATTERNS] = "unstructured"  # or "2:4" (2 of every 4 weights pruned; sparsity is then 0.5)
    mlp_ratio: Share = 0.0  # structured: share of MLP channels removed
    head_ratio: Share = 0.0  # structured: share of key/value head groups removed
    recovery: Literal[RECOVERIES] = "none"
    recovery_steps: Annotated[Whole, Field(ge=0)] = 0
    execution: Annotated[str, OneOf(EXECUTIONS, says="LLM execution {value!r} is not available; "
                                                     "choose from {choices}")] = "torch"

    def __post_init__(self) -> None:
        if self.quant_method == "none" and self.bits != 32:
            raise ConfigError(f"{self.bits} bits needs a quantization method (rtn, gptq or awq)")
        if self.quant_method != "none" and not 2 <= self.bits <= 8:
            raise ConfigError(f"LLM weight quantization takes 2 to 8 bits, not {self.bits}")
        if self.prune_method != "none" and self.pattern == "unstructured" and not 0 < self.sparsity < 1:
            raise ConfigError(f"sparsity {self.sparsity} must be above 0 and below 1")
        if self.prune_method == "none" and (self.sparsity or self.pattern != "unstructured"):
            raise ConfigError("a sparsity or 2:4 pattern needs a pruning method (magnitude, wanda or sparsegpt)")
        if (self.recovery == "none") != (self.recovery_steps == 0):
            raise ConfigError("recovery (finetune or distill) and recovery steps above 0 go together")

    @property
    def grid(self) -> QuantGrid | None:
        """The grid of the stored weights (bits, group size, and the method's symmetry), None for float weights."""
        if self.quant_method == "none":
            return None
        return QuantGrid.coerce(self.bits, self.group_size, quantize.RECIPES[self.quant_method].symmetric)

    @property
    def is_reference(self) -> bool:
        return self == LLMPointConfig(execution=self.execution)

    def label(self) -> str:
        parts = []
        if self.mlp_ratio or self.head_ratio:
            what = [f"MLP -{self.mlp_ratio:.0%}"] if self.mlp_ratio else []
            what += [f"heads -{self.head_ratio:.0%}"] if self.head_ratio else []
            parts.append("structured " + ", ".join(what))
        if self.prune_method != "none":
            amount = "2:4" if self.pattern == "2:4" else f"{self.sparsity:.0%}"
            parts.append(f"{self.prune_method} {amount}")
        if self.recovery != "none":
            parts.append(f"{self.recovery} {self.recovery_steps} steps")
        if self.quant_method != "none":
            group = f"g{self.group_size}" if self.group_size else "per-channel"
            parts.append(f"{self.quant_method} {self.bits}-bit {group}")
        text = " + ".join(parts) or "fp32 (uncompressed)"
        return text if self.execution == "torch" else f"{text} [{self.execution}]"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LLMPointConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"LLM point config has unknown fields {unknown}")
        return cls(**data)

    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


Count = Annotated[Whole, Field(ge=1)]
Rate = Annotated[Number, Field(gt=0)]


@settings
class LLMSettings:
    """How an LLM point is compressed and measured; part of every record (and of the point's key)."""

    context_len: Count = 512
    stride: Annotated[Whole | None, Field(ge=1)] = None  # None: = context_len (non-overlapping windows)
    eval_tokens: Count = 4096  # the last N tokens of the evaluation part
    calib_samples: Count = 16
    calib_seq_len: Count = 256
    prefill_tokens: Count = 128
    prefill_repeats: Count = 5
    decode_new_tokens: Annotated[Whole, Field(ge=2), Says("decode speed needs at least 2 new tokens, not {value}")] = 16
    decode_repeats: Count = 2
    recovery_batch: Count = 2
    recovery_lr: Rate = 1e-4
    # Distillation as alpha * KD + (1 - alpha) * CE at T=1: on SmolLM2 (50% magnitude, 20 steps) the 0.5 mix
    # beat fine-tuning at lr 1e-4 and 5e-4 where pure KD (alpha 1) lost, and T=2 lost to T=1 (docs/llm.md).
    temperature: Rate = 1.0
    distill_alpha: Rate = 0.5
    zero_shot_examples: Count = 64

    def __post_init__(self) -> None:
        if self.stride is not None and self.stride > self.context_len:
            raise ConfigError(f"stride {self.stride} must not exceed the context length {self.context_len}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LLMSettings":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class ZeroShot:
    """A labelled evaluation set for zero-shot accuracy (label words scored after a prompt)."""

    texts: list[str]
    labels: list[str]
    label_words: dict[str, str]


def _stopper(should_stop: Callable[[], bool] | None):
    def progress(_done, _total):
        if should_stop is not None and should_stop():
            raise Cancelled("stopped while compressing")
    return progress


def compress_llm(model, tokenizer, split: text_data.TextSplit, config: LLMPointConfig,
                 settings: LLMSettings = LLMSettings(), should_stop: Callable[[], bool] | None = None) -> tuple:
    """A compressed copy of ``model`` (the original is left as it is) and what was done, step by step."""
    student = copy.deepcopy(model).eval()
    if config.is_reference:
        return student, []
    calib = text_data.calibration_batch(tokenizer, split, settings.calib_samples, settings.calib_seq_len)
    steps, progress = [], _stopper(should_stop)
    if config.mlp_ratio or config.head_ratio:
        steps.append(structured.prune_structured(student, calib, config.mlp_ratio, config.head_ratio))
    if config.prune_method != "none":
        pattern = "2:4" if config.pattern == "2:4" else None
        sparsity = 0.5 if pattern else config.sparsity
        steps.append(prune.prune_model(student, config.prune_method, sparsity, pattern, calib_ids=calib,
                                       progress=progress))
    if config.recovery != "none":
        progress(0, 0)
        steps.append(distill.recover(student, model if config.recovery == "distill" else None, calib,
                                     config.recovery_steps, batch_size=settings.recovery_batch,
                                     mode=config.recovery, lr=settings.recovery_lr, temperature=settings.temperature,
                                     alpha=settings.distill_alpha))
    if config.quant_method != "none":
        steps.append(quantize.quantize_model(student, config.quant_method, config.bits, config.group_size,
                                             calib_ids=calib, progress=progress))
    return student.eval(), steps


def ideal_size_bytes(model, config: LLMPointConfig) -> int:
    """An estimate: decoder Linears as packed codes (plus fp16 scale and zero per group, a 1-bit mask when
    pruned), everything else fp32. The file actually written stores floats (``size_bytes``)."""
    layers = {id(lin.weight) for lin in linear_layers(model).values()}
    total = 0.0
    for p in model.parameters():
        if id(p) not in layers:
            total += p.numel() * p.element_size()
            continue
        rows, cols = p.shape
        if config.quant_method != "none":
            groups = rows * (cols // (config.group_size or cols))
            kept = p.numel() if config.prune_method == "none" else int((p != 0).sum())
            total += kept * config.bits / 8 + groups * 4 + (p.numel() / 8 if config.prune_method != "none" else 0)
        elif config.prune_method != "none":
            total += int((p != 0).sum()) * 4 + p.numel() / 8
        else:
            total += p.numel() * 4
    return int(total)


FLOAT_FILES = "float32 safetensors (the export's model/ files)"
PACKED_FILES = "compressed-tensors pack-quantized safetensors (the export's compressed/ files)"


def written_size_bytes(model, tokenizer, grid: QuantGrid | None = None) -> tuple[int, str]:
    """(bytes, what was written): the file an export ships for this point, written to a temporary folder.

    A point whose decoder weights sit on an integer grid of 2-8 bits (symmetric, or asymmetric with zero
    points) is packed (compressed-tensors, the export's ``compressed/`` folder), so its size axis shows
    what a user would ship; other points (float, pruned, or weights on no grid such as AWQ's) are written
    as float32 safetensors."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one bar per point would bury the sweep's own lines
    try:
        with tempfile.TemporaryDirectory(prefix="gemini-llm-size-") as tmp:
            if grid is not None and 2 <= grid.bits <= 8:
                # symmetric first, then asymmetric (gptq-asym's): the grid the weights sit on is the one packed
                for symmetric in (True, False):
                    packed = QuantGrid.coerce(grid, symmetric=symmetric)
                    try:
                        written = export_compressed(model, None, Path(tmp) / f"packed-{symmetric}", packed)
                        return written["file_bytes"], PACKED_FILES
                    except ConfigError:  # on neither grid (AWQ): the float files are what ships
                        pass
            folder = save_hf_folder(model, tokenizer, Path(tmp) / "m", {})
            return sum(p.stat().st_size for p in folder.iterdir() if p.suffix == ".safetensors"), FLOAT_FILES
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _cpu_facts() -> dict:
    """The conditions every point is measured under (CPU model and instruction-set flags decide which
    runtime wins on a machine)."""
    return {"threads": torch.get_num_threads(), "cores": os.cpu_count(), "cpu": cpu_model(),
            "cpu_flags": list(cpu_flags()),
            "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def measure_llm_point(model, tokenizer, split: text_data.TextSplit, execution: str = "torch",
                      settings: LLMSettings = LLMSettings(), zero_shot: ZeroShot | None = None,
                      size: bool = True, grid: QuantGrid | None = None, should_stop=None) -> dict:
    """Every figure of one LLM point: perplexity (context length and stride recorded), zero-shot accuracy
    when a labelled set is given, prefill latency p10/p50/p90, decode tokens/s, peak memory, file size.

    ``execution``: where the point runs: "torch" here, any other (OpenVINO, ONNX Runtime GenAI, "auto")
    through ``llm.runtimes``, which carries the point's weight ``grid`` (``LLMPointConfig.grid``) over.
    ``should_stop`` is asked between stages and inside the long ones (perplexity windows, zero-shot examples):
    a cancel acts within one measured step, not after the whole point."""
    if execution not in EXECUTIONS:
        raise ConfigError(f"LLM execution {execution!r} is not available; choose from {', '.join(EXECUTIONS)}")
    model.eval()
    ids = text_data.evaluation_ids(tokenizer, split, settings.eval_tokens)
    if execution != "torch":
        return _measure_on_runtime(model, tokenizer, ids, execution, settings, zero_shot, size, grid, split)
    started = time.perf_counter()
    ppl, memory = metrics.peak_rss_mb(lambda: metrics.perplexity(model, ids, settings.context_len, settings.stride,
                                                                 should_stop=should_stop))
    record = {"execution": execution, "perplexity": ppl["perplexity"], "nll_per_token": ppl["nll_per_token"],
              "tokens_scored": ppl["tokens_scored"], "context_len": ppl["context_len"], "stride": ppl["stride"],
              "text_source": split.source, "perplexity_seconds": round(time.perf_counter() - started, 2),
              # each evaluation window's loss: perplexity's interval and the paired ratio to the reference
              "window_nll": ppl["window_nll"], "window_tokens": ppl["window_tokens"]}
    prompt = ids[: min(settings.prefill_tokens, ids.numel())]
    metrics.check_stop(should_stop, "latency")
    prefill = metrics.prefill_latency(model, prompt, repeats=settings.prefill_repeats)
    record.update(prefill)
    # The sweep's shared latency columns hold the prefill time of one sequence (latency_kind says so).
    record.update({"latency_ms_p10": prefill["prefill_ms_p10"], "latency_ms_p50": prefill["prefill_ms_p50"],
                   "latency_ms_p90": prefill["prefill_ms_p90"], "latency_kind": "prefill",
                   "latency_runs": settings.prefill_repeats, "batch_size": 1})
    record.update(metrics.decode_tokens_per_s(model, prompt[:32], settings.decode_new_tokens,
                                              settings.decode_repeats))
    record.update({"peak_rss_mb": memory["peak_rss_mb"], "peak_memory_bytes": int(memory["peak_rss_mb"] * 2**20)})
    if zero_shot is not None:
        acc = metrics.zero_shot_accuracy(model, tokenizer, zero_shot.texts, zero_shot.labels, zero_shot.label_words,
                                         should_stop=should_stop)
        record.update({"accuracy": acc["accuracy"], "test_n": acc["examples"], "label_words": acc["label_words"]})
    params = sum(p.numel() for p in model.parameters())
    layers = linear_layers(model)
    zeros = sum(int((lin.weight == 0).sum()) for lin in layers.values())
    total = sum(lin.weight.numel() for lin in layers.values()) or 1
    record.update({"params": params, "nonzero_params": params - zeros, "decoder_sparsity": round(zeros / total, 4)})
    if size:
        record["size_bytes"], record["size_written"] = written_size_bytes(model, tokenizer, grid)
    record.update(_cpu_facts())
    return record


def runtime_settings(settings: LLMSettings, grid: QuantGrid | None) -> LLMRunSettings:
    """The runtime measurement of a point with ``settings`` whose weights sit on ``grid`` (None: float)."""
    bits, group = (grid.bits, grid.group_size) if grid is not None else (None, None)
    return LLMRunSettings(threads=torch.get_num_threads(), prompt_tokens=min(32, settings.prefill_tokens),
                          new_tokens=max(2, settings.decode_new_tokens), prefill_tokens=settings.prefill_tokens,
                          repeats=max(settings.decode_repeats, settings.prefill_repeats),
                          context_len=settings.context_len,
                          weight_bits=bits if bits and bits < 16 else None, group_size=group)


def _measure_on_runtime(model, tokenizer, ids, execution, settings: LLMSettings, zero_shot, size, grid, split) -> dict:
    """A point on a runtime: the runtime's own perplexity, prefill and greedy decode (``llm.runtimes``), in
    the record's shared columns; the decode prompt and token count are the torch points' (32 and
    ``decode_new_tokens``), so the executions of one sweep compare like for like."""
    if settings.stride not in (None, settings.context_len):
        raise ConfigError("runtime executions score perplexity on non-overlapping windows: leave the stride unset")
    run = runtime_settings(settings, grid)
    def zero_shot_on_runtime(model_like) -> dict:  # the runtime's own logits, as torch points score them
        acc = metrics.zero_shot_accuracy(model_like, tokenizer, zero_shot.texts, zero_shot.labels,
                                         zero_shot.label_words)
        return {"accuracy": acc["accuracy"], "test_n": acc["examples"], "label_words": acc["label_words"]}

    measured = measure_on_runtime(execution, model, tokenizer, ids, run,
                                  also=zero_shot_on_runtime if zero_shot is not None else None)
    measured.pop("tokens", None)
    record = {**measured, "execution": measured.get("execution", execution), "requested_execution": execution,
              "tokens_scored": measured["perplexity_tokens"], "context_len": settings.context_len,
              "stride": settings.context_len, "text_source": split.source,
              "latency_ms_p10": measured["prefill_ms_p10"], "latency_ms_p50": measured["prefill_ms_p50"],
              "latency_ms_p90": measured["prefill_ms_p90"], "latency_kind": "prefill", "latency_runs": run.repeats,
              "batch_size": 1, "decode_method": "greedy loop on the runtime (llm.runtimes)"}
    if "peak_rss_mb" in measured:
        record["peak_memory_bytes"] = int(measured["peak_rss_mb"] * 2**20)
    params = sum(p.numel() for p in model.parameters())
    record["params"] = params
    if size:
        record["size_bytes"], record["size_written"] = written_size_bytes(model, tokenizer, grid)
    record.update(_cpu_facts())
    return record
