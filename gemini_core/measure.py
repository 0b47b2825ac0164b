"""Every figure the product shows is made here, on the real model and device.

- accuracy and macro-F1 on the held-out test split;
- latency: warm-up, then repeats until at least ``min_runs`` runs and ``min_seconds``, median
  (p50) and p90 in ms, CUDA synchronised;
- size: bytes of the checkpoint as the exporter writes it; ideal size is a formula, labelled so;
- memory: CUDA's peak allocation, or on CPU the weights' resident bytes plus the activation
  peak the profiler saw during one forward pass;
- MACs: torch-pruning's op counter, an estimate (zeros of unstructured sparsity still count).

Memory cap: with ``GEMINI_MAX_BATCH_BYTES`` set (bytes), a point whose activation memory for one
batch would exceed it fails with ``BatchMemoryError`` (a ``torch.OutOfMemoryError``) before its
batch runs: one example is profiled and the batch's need projected linearly (an estimate); the
measured activation peak of the batch is checked again afterwards. The sweep records such a point
as failed ("out of memory at batch size N") and goes on. Unset: no cap.
"""
from __future__ import annotations

import contextlib
import io
import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

from gemini_core.compress import CompressedModel
from gemini_core.device import device_info
from gemini_core.errors import Cancelled, ConfigError
from gemini_core.results.stats import correct_bits, wilson_interval
from gemini_core.runtimes.converted import runtime_figures
from gemini_core.scenarios.base import Scenario, Split
from gemini_core.training.loop import predict

ESTIMATED_FIELDS = ("macs", "ideal_size_bytes")
MEMORY_CAP_ENV = "GEMINI_MAX_BATCH_BYTES"


class BatchMemoryError(torch.OutOfMemoryError):
    """A batch needs more activation memory than ``GEMINI_MAX_BATCH_BYTES`` allows."""


def memory_cap_bytes() -> int | None:
    """``GEMINI_MAX_BATCH_BYTES`` as an int, or None when unset."""
    value = os.environ.get(MEMORY_CAP_ENV, "").strip()
    if not value:
        return None
    try:
        cap = int(float(value))
    except ValueError:
        raise ConfigError(f"{MEMORY_CAP_ENV}={value!r} is not a number of bytes") from None
    if cap < 1:
        raise ConfigError(f"{MEMORY_CAP_ENV}={value!r} must be at least 1 byte")
    return cap


def check_memory_cap(model: nn.Module, inputs: dict[str, torch.Tensor], device, cap: int | None) -> None:
    """BatchMemoryError when one batch of ``inputs`` would need more activation memory than ``cap``.

    Profiles a single example and multiplies by the batch size (an estimate, stated in the message),
    so the large batch never runs when it would not fit.
    """
    if cap is None:
        return
    batch_size = len(next(iter(inputs.values())))
    one = measure_memory(model, {k: v[:1] for k, v in inputs.items()}, device)["activation_peak_bytes"]
    projected = one * batch_size
    if projected > cap:
        raise BatchMemoryError(f"a batch of {batch_size} needs about {projected:,} bytes of activations "
                               f"(estimate: {one:,} bytes for one example x {batch_size}), over the cap "
                               f"{MEMORY_CAP_ENV}={cap:,}")


def _check_measured_peak(memory: dict, batch_size: int, cap: int | None) -> None:
    if cap is not None and memory["activation_peak_bytes"] > cap:
        raise BatchMemoryError(f"a batch of {batch_size} used {memory['activation_peak_bytes']:,} bytes of "
                               f"activations (measured), over the cap {MEMORY_CAP_ENV}={cap:,}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def classification_metrics(model: nn.Module, split: Split, device, batch_size: int = 256,
                           should_stop: Callable[[], bool] | None = None) -> dict:
    from sklearn.metrics import f1_score

    preds = predict(model, split, batch_size=batch_size, device=device, should_stop=should_stop)
    labels = split.labels
    correct = (preds == labels).tolist()
    n = len(correct)
    return {
        "accuracy": float((preds == labels).float().mean()),
        "macro_f1": float(f1_score(labels.numpy(), preds.numpy(), average="macro", zero_division=0)),
        "test_n": n,
        "accuracy_ci95": list(wilson_interval(sum(correct), n)),
        # 1 / 0 per test example: pairs this point with the baseline (and the control) on the same examples
        "test_correct": correct_bits(correct),
    }


@torch.no_grad()
def measure_latency(model: nn.Module, inputs: dict[str, torch.Tensor], device, min_runs: int = 20,
                    min_seconds: float = 0.5, warmup: int = 3, max_runs: int = 10_000,
                    keep_samples: bool = False, should_stop: Callable[[], bool] | None = None) -> dict:
    """Median, p10 and p90 of single forward passes, in ms, after warm-up (``keep_samples``: every time too)."""
    device = torch.device(device)
    inputs = {k: v.to(device) for k, v in inputs.items()}
    model.eval()
    for _ in range(warmup):
        model(**inputs)
    _sync(device)
    times_ms: list[float] = []
    started = time.perf_counter()
    while len(times_ms) < max_runs and (len(times_ms) < min_runs or time.perf_counter() - started < min_seconds):
        if should_stop is not None and should_stop():  # cancel within one forward pass, not one point
            raise Cancelled("stopped while timing; this point stays unmeasured")
        t0 = time.perf_counter()
        model(**inputs)
        _sync(device)
        times_ms.append((time.perf_counter() - t0) * 1e3)
    times_ms.sort()

    def quantile(q: float) -> float:
        return times_ms[min(len(times_ms) - 1, int(round(q * (len(times_ms) - 1))))]

    result = {"latency_ms_p50": statistics.median(times_ms), "latency_ms_p10": quantile(0.1),
              "latency_ms_p90": quantile(0.9), "latency_ms_min": times_ms[0], "latency_runs": len(times_ms)}
    if keep_samples:
        result["samples_ms"] = list(times_ms)
    return result


def _resident_bytes(model: nn.Module) -> int:
    """Bytes the model's tensors hold in memory (packed int8 weights included)."""
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor is None or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        packed = getattr(tensor, "packed", None)  # 2:4 semi-structured: kept values + metadata
        if packed is not None:
            meta = getattr(tensor, "meta", None)
            meta_bytes = meta.numel() * meta.element_size() if meta is not None else 0
            total += packed.numel() * packed.element_size() + meta_bytes
        elif tensor.layout == torch.sparse_csr:
            parts = (tensor.crow_indices(), tensor.col_indices(), tensor.values())
            total += sum(p.numel() * p.element_size() for p in parts)
        else:
            total += tensor.numel() * tensor.element_size()
    for module in model.modules():  # dynamically quantized Linear keeps its weight packed, not as a buffer
        packed = getattr(module, "_packed_params", None)
        if packed is not None and hasattr(module, "weight"):
            weight = module.weight()
            bias_bytes = module.bias().numel() * 4 if module.bias() is not None else 0
            total += weight.numel() * weight.element_size() + bias_bytes
    return total


@torch.no_grad()
def measure_memory(model: nn.Module, inputs: dict[str, torch.Tensor], device) -> dict:
    """Peak bytes allocated while running one batch (weights included)."""
    device = torch.device(device)
    inputs = {k: v.to(device) for k, v in inputs.items()}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        model(**inputs)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_memory_bytes": int(peak), "activation_peak_bytes": int(peak - base),
                "weight_memory_bytes": _resident_bytes(model)}
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            model(**inputs)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    weights = _resident_bytes(model)
    return {"peak_memory_bytes": int(weights + peak), "activation_peak_bytes": int(peak),
            "weight_memory_bytes": int(weights)}


def warm_profiler() -> None:
    """Start and stop the CPU profiler once on this thread. Kineto binds itself to the thread that imported
    torch and prints "External init callback must run in same thread as registerClient" when a profile first
    starts on another (a dashboard job's thread); the dashboard calls this on the thread that imported torch."""
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True):
            torch.zeros(1).add_(1)


def count_macs(model: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(MACs, params) of one example through the float model: an estimate from torch-pruning's counter."""
    import torch_pruning as tp

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the counter prints notes
        warnings.simplefilter("ignore")
        macs, params = tp.utils.count_ops_and_params(model, {k: v[:1] for k, v in inputs.items()})
    return int(macs), int(params)


def measure_point(compressed: CompressedModel, scenario: Scenario, batch_size: int = 32,
                  macs: int | None = None, latency_kwargs: dict | None = None,
                  should_stop: Callable[[], bool] | None = None) -> dict:
    """One record with every figure for ``compressed`` (see module docstring for what each means)."""
    started = time.perf_counter()
    device = compressed.device
    splits = scenario.splits
    batch = splits.test.first(batch_size).inputs
    cap = memory_cap_bytes()
    check_memory_cap(compressed.model, batch, device, cap)  # before any large batch runs
    stored = compressed.stored_model
    record: dict = {"scenario": scenario.name, "config": compressed.config.to_dict(),
                    "label": compressed.config.label(),
                    "backend": compressed.backend, "batch_size": batch_size}
    record.update(classification_metrics(compressed.model, splits.test, device, should_stop=should_stop))
    record.update(measure_latency(compressed.model, batch, device, should_stop=should_stop,
                                  **(latency_kwargs or {})))
    memory = measure_memory(compressed.model, batch, device)
    _check_measured_peak(memory, batch_size, cap)
    record.update(memory)
    record.update(runtime_figures(compressed.model, batch))  # converted runtimes: memory, calibration, choice
    record["size_bytes"] = len(compressed.storage())
    record["ideal_size_bytes"] = compressed.ideal_size_bytes()
    record["params"] = sum(p.numel() for p in stored.parameters())
    record["nonzero_params"] = int(sum(int((p != 0).sum()) for p in stored.parameters()))
    if macs is None:
        macs, _ = count_macs(stored, batch)
    record["macs"] = macs
    record["estimated_fields"] = list(ESTIMATED_FIELDS)
    record["achieved_prune_ratio"] = compressed.pruning.achieved_ratio
    record["notes"] = list(compressed.pruning.notes)
    info = device_info(device)
    record.update({"device": info["device"], "threads": info["threads"], "host": info["host"],
                   "torch": info["torch"], "load_avg_1m": info["load_avg_1m"], "cores": info["cores"],
                   "cpu": info["cpu"], "cpu_flags": info["cpu_flags"]})
    record["measure_seconds"] = time.perf_counter() - started
    return record


# -- per-layer figures for the sensitivity analysis (sensitivity.py) ------------------------------
@torch.no_grad()
def accuracy_and_loss(model: nn.Module, split: Split, device, batch_size: int = 256) -> dict:
    """Accuracy and mean cross-entropy of ``model`` on ``split`` (the analysis uses the validation split)."""
    device = torch.device(device)
    model.eval()
    correct, loss, count = 0, 0.0, 0
    for batch in split.batches(batch_size):
        logits = model(**{k: v.to(device) for k, v in batch.inputs.items()}).float().cpu()
        loss += float(nn.functional.cross_entropy(logits, batch.labels, reduction="sum"))
        correct += int((logits.argmax(-1) == batch.labels).sum())
        count += len(batch)
    return {"accuracy": correct / max(count, 1), "loss": loss / max(count, 1)}


def weight_stats(weight: torch.Tensor) -> dict:
    """Range and outlier figures of one weight: max|w| / std and the share of weights beyond 6 std."""
    w = weight.detach().float().reshape(-1)
    std = float(w.std()) if w.numel() > 1 else 0.0
    mean = float(w.mean())
    amax = float(w.abs().max()) if w.numel() else 0.0
    beyond = float(((w - mean).abs() > 6 * std).float().mean()) if std > 0 else 0.0
    return {"weight_min": float(w.min()), "weight_max": float(w.max()), "weight_std": std,
            "max_abs_over_std": amax / std if std > 0 else 0.0, "outlier_fraction_6std": beyond}


@torch.no_grad()
def measure_layer_latency(model: nn.Module, inputs: dict[str, torch.Tensor], device, layers: list[str],
                          repeats: int = 15, warmup: int = 3) -> dict:
    """Each layer's share of one forward pass, timed by module hooks.

    A forward pre-hook and a forward hook on every layer in ``layers`` read ``time.perf_counter``
    (CUDA synchronised); the whole pass is timed the same way. Medians over ``repeats`` passes.
    Shares are of the median whole pass; what no listed layer covers (norms, activations,
    attention arithmetic) is reported as ``other``.
    """
    device = torch.device(device)
    inputs = {k: v.to(device) for k, v in inputs.items()}
    model.eval()
    samples: dict[str, list[float]] = {name: [] for name in layers}
    started: dict[str, float] = {}
    handles = []

    def pre(name):
        def hook(module, args):
            _sync(device)
            started[name] = time.perf_counter()
        return hook

    def post(name):
        def hook(module, args, output):
            _sync(device)
            samples[name][-1] += (time.perf_counter() - started[name]) * 1e3
        return hook

    for name in layers:
        module = model.get_submodule(name)
        handles.append(module.register_forward_pre_hook(pre(name)))
        handles.append(module.register_forward_hook(post(name)))
    totals = []
    try:
        for i in range(warmup + repeats):
            for name in layers:
                samples[name].append(0.0)  # a layer called twice in one pass adds both calls
            _sync(device)
            t0 = time.perf_counter()
            model(**inputs)
            _sync(device)
            totals.append((time.perf_counter() - t0) * 1e3)
    finally:
        for h in handles:
            h.remove()
    total = statistics.median(totals[warmup:])
    rows = []
    for name in layers:
        ms = statistics.median(samples[name][warmup:])
        rows.append({"layer": name, "ms_p50": ms, "share": ms / total if total > 0 else 0.0})
    covered = sum(r["ms_p50"] for r in rows)
    return {"method": "module hooks (perf_counter around each layer's forward), median of repeats",
            "total_ms_p50": total, "other_ms_p50": max(total - covered, 0.0), "repeats": repeats,
            "batch_size": int(next(iter(inputs.values())).shape[0]), "layers": rows}
