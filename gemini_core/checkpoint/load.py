"""Reading an export: verify every checksum, rebuild the architecture, replay pruning, decode, run.

``load(path)`` only runs safe loaders (safetensors, JSON; never pickle, never remote code). It
rebuilds the architecture from the recipe, replays torch-pruning's history, decodes the weights
and builds the same kernels the sweep measured, so ``evaluate_export`` reproduces the accuracy.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from gemini_core.checkpoint import reader
from gemini_core.checkpoint.archive import _export_root
from gemini_core.checkpoint.format import MODEL_FILE
from gemini_core.checkpoint.inputs import synthetic_inputs
from gemini_core.checkpoint.shapes import check_recipe_fits_weights
from gemini_core.compress.codec import LAYER_BITS_KEY, decode_state, from_bytes
from gemini_core.compress.model import CompressedModel
from gemini_core.config import CompressionConfig
from gemini_core.errors import CheckpointError, GeminiError
from gemini_core.runtimes.converted import CONVERTED_EXECUTIONS
from gemini_core.runtimes.torch_kernels import build_execution_model
from gemini_core.scenarios.registry import after_prune, build_architecture
from gemini_core.techniques.prune import PruneResult, replay_pruning


@dataclass
class LoadedExport:
    """A reloaded export: the runnable model plus everything needed to measure it."""

    model: nn.Module  # the runnable model, on the recorded kernels
    stored_model: nn.Module  # fp32 CPU module holding exactly the stored values
    quantized: dict
    config: object  # CompressionConfig
    recipe: dict
    backend: str
    layer_backends: dict
    device: torch.device
    path: Path
    sparse_names: set = field(default_factory=set)

    def as_compressed(self):
        """A ``CompressedModel`` view, so the sweep's own ``measure_point`` can measure it."""
        p = self.recipe.get("pruning") or {}
        pruning = PruneResult(self.stored_model, history=p.get("history"),
                              achieved_ratio=p.get("achieved_ratio", 0.0), params_before=p.get("params_before", 0),
                              params_after=p.get("params_after", 0), finetune_loss=p.get("finetune_loss"),
                              notes=list(p.get("notes") or []))
        return CompressedModel(self.config, self.model, self.stored_model, self.quantized, pruning, self.backend,
                               self.layer_backends, self.device, set(self.sparse_names))


def rebuild_stored_model(recipe: dict, blob: bytes) -> tuple[nn.Module, dict]:
    """The stored (fp32, dequantized) model and its quantized codes, from a verified recipe + file."""
    arch = recipe["scenario"]["arch"]
    check_recipe_fits_weights(recipe, blob)  # header only: cap and shapes before anything is built
    try:
        tensors, layout, meta = from_bytes(blob)
    except Exception as exc:  # safetensors / layout errors: the file is not what the recipe says
        raise CheckpointError(f"{MODEL_FILE} cannot be decoded: {type(exc).__name__}: {exc}") from None
    check_bits_fit_layout(recipe, layout)  # what the recipe says against what the file stores
    try:
        state, quantized = decode_state(tensors, layout)
    except Exception as exc:
        raise CheckpointError(f"{MODEL_FILE} cannot be decoded: {type(exc).__name__}: {exc}") from None
    _check_layer_bits(recipe, meta, quantized)
    model = build_architecture(arch)
    for history in (recipe.get("baseline_pruning_history") or [], (recipe.get("pruning") or {}).get("history") or []):
        if history:
            replay_pruning(model, history, synthetic_inputs(recipe))
            after_prune(arch, model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"the weights in {MODEL_FILE} do not fit the rebuilt architecture: "
                              f"{str(exc).splitlines()[0]}") from None
    return model.float().eval(), quantized


def recipe_config(recipe: dict) -> CompressionConfig:
    """The classifier recipe's ``config``, checked for meaning (one line naming the field)."""
    try:
        return CompressionConfig.from_dict(recipe["config"])
    except GeminiError as exc:
        raise CheckpointError(f"recipe.json: field config: {exc}") from None


def check_bits_fit_layout(recipe: dict, layout: dict) -> None:
    """The bits the recipe says (``config``, ``layer_bits``) against the codes the file's layout stores: a
    recipe that says 4 bits over 8-bit codes (or 32 over codes, or none over floats) is refused, not measured."""
    config = recipe_config(recipe)
    stored = {name.removesuffix(".weight"): lay.get("bits") for name, lay in layout.items()
              if isinstance(lay, dict) and lay.get("kind") == "quantized"}
    def refuse(field, said, have):
        codes = f"{have}-bit codes" if have else "float weights only"
        raise CheckpointError(f"recipe.json: field {field} does not fit {MODEL_FILE}: the recipe says {said} bits, "
                              f"the file stores {codes}")
    if not config.layer_overrides:
        for bits in sorted(set(stored.values())):
            if bits != config.bits:
                refuse("config.bits", config.bits, bits)
        if config.bits <= 8 and not stored:
            refuse("config.bits", config.bits, None)
    else:
        allowed = {config.bits} | {o.bits for o in config.layer_overrides if o.bits is not None}
        for bits in sorted(set(stored.values())):
            if bits not in allowed:
                refuse("config", " or ".join(map(str, sorted(allowed))), bits)
    for name, bits in (recipe.get("layer_bits") or {}).items():
        have = stored.get(name)
        if (have if have is not None else 32) != (bits if bits <= 8 else 32):
            refuse(f"layer_bits.{_short_name(name)}", bits, have)


def _short_name(name: str) -> str:
    text = name if name.isprintable() else ascii(name)[1:-1]
    return text if len(text) <= 80 else text[:77] + "..."


def _check_layer_bits(recipe: dict, meta: dict, quantized: dict) -> None:
    """A per-layer export: the bits written per layer must be those the codes hold and the recipe asks for."""
    if LAYER_BITS_KEY not in meta:
        return
    try:
        layer_bits = json.loads(meta[LAYER_BITS_KEY])
    except ValueError:
        raise CheckpointError(f"{MODEL_FILE}: per-layer bits are not valid JSON") from None
    for name, bits in layer_bits.items():
        q = quantized.get(f"{name}.weight")
        if (q.bits if q is not None else None) != (bits if bits <= 8 else None):
            raise CheckpointError(f"{MODEL_FILE}: layer {name} is recorded at {bits} bits but stored at "
                                  f"{q.bits if q is not None else 'float'}")
    if layer_bits != (recipe.get("layer_bits") or layer_bits):
        raise CheckpointError(f"{MODEL_FILE}: per-layer bits differ from recipe.json")


def load_export(path, device="cpu", scenario=None) -> LoadedExport:
    """Verify and reload an export folder (or its zip): the runnable model and its recipe.

    A point executed on a converted runtime (ONNX Runtime, OpenVINO) is converted again with
    ``scenario``'s training examples as calibration; without a scenario it runs on torch's dense
    kernels and ``backend`` says so.
    """
    with _export_root(path) as root:
        recipe = reader.open_export(root)  # the one reader: schema, paths, links, listed files, checksums
        return load_verified(root, recipe, device, scenario, path)


def load_verified(root: Path, recipe: dict, device="cpu", scenario=None, path=None) -> LoadedExport:
    """``load_export`` for an export folder whose recipe ``reader.open_export`` has returned."""
    device = torch.device(device)
    blob = reader.member(root, MODEL_FILE).read_bytes()
    config = recipe_config(recipe)
    stored, quantized = rebuild_stored_model(recipe, blob)
    if config.execution in CONVERTED_EXECUTIONS and scenario is None:
        dense = dataclasses.replace(config, execution="dense")
        runnable, backend, layers = build_execution_model(stored, dense, quantized, device)
        backend = f"{backend} (recorded on {config.execution}; converting again needs the scenario's data)"
    else:
        runnable, backend, layers = build_execution_model(stored, config, quantized, device, scenario=scenario)
    return LoadedExport(runnable, stored, quantized, config, recipe, backend, layers, device,
                        Path(path if path is not None else root).expanduser().resolve(),
                        set(recipe.get("sparse_names") or []))


def load(path, device="cpu") -> nn.Module:
    """The runnable compressed model of an export (``forward(**inputs)`` -> logits).

    Safe loaders only: JSON and safetensors, after every file's SHA-256 is checked.
    """
    loaded = load_export(path, device=device)
    model = loaded.model
    model.gemini_recipe = loaded.recipe  # plain attribute: the recipe travels with the model
    return model
