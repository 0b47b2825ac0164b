"""Pruning: structured through torch-pruning's dependency graph, unstructured and N:M through masks.

Structured pruning physically removes channels / neurons / heads (the model gets smaller and
can get faster); unstructured and 2:4 pruning zero weights (the model keeps its shape; only
sparse kernels or sparse storage can turn the zeros into savings).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune as torch_prune

from gemini_core.config import CompressionConfig
from gemini_core.errors import CheckpointError, ConfigError
from gemini_core.scenarios.base import PruneSpec, Scenario, Split
from gemini_core.techniques.methods import PRUNE_METHODS, nm_mask  # noqa: F401  (nm_mask: part of this module's API)
from gemini_core.techniques.plan import LayerSetting, layer_names, matching, resolve_layers
from gemini_core.training.loop import train_steps


@dataclass
class PruneResult:
    model: nn.Module
    history: list | None = None  # torch-pruning's pruning history, replayable on the original architecture
    achieved_ratio: float = 0.0  # structured: share of parameters removed; unstructured: share of zeros
    params_before: int = 0
    params_after: int = 0
    finetune_loss: float | None = None
    notes: list[str] = field(default_factory=list)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prunable_layers(model: nn.Module, spec: PruneSpec) -> list[tuple[str, nn.Module]]:
    """Linear and Conv2d layers that mask-based pruning touches (the classifier and skips excluded)."""
    skip = {id(m) for m in list(spec.ignored_layers) + list(spec.skip_unstructured)}
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d)) and id(m) not in skip]


def _importance(method: str):
    entry = PRUNE_METHODS.get(method)
    if entry is None or entry.importance is None:
        raise ConfigError(f"{method!r} is not a structured pruning method")
    return entry.importance()


def _loss_backward(model: nn.Module, batch: Split) -> None:
    """Gradients for Taylor importance: one loss over a calibration batch touching every layer."""
    model.zero_grad(set_to_none=True)
    logits = model(**batch.inputs)
    nn.functional.cross_entropy(logits, batch.labels).backward()


def pruner_kwargs(spec: PruneSpec, ratio: float) -> dict:
    """torch-pruning MetaPruner arguments (all but the importance) for ``spec`` at ``ratio``."""
    kwargs = dict(pruning_ratio=ratio, ignored_layers=list(spec.ignored_layers), round_to=spec.round_to)
    if spec.num_heads:
        heads = min(spec.num_heads.values())
        # torch-pruning removes ceil(ratio * heads) heads per layer: always keep at least one.
        head_ratio = min(ratio, (heads - 1) / heads) if heads > 1 else 0.0
        kwargs.update(num_heads=spec.num_heads, prune_num_heads=spec.prune_heads,
                      prune_head_dims=not spec.prune_heads, head_pruning_ratio=head_ratio)
    kwargs.update(spec.tp_kwargs)
    return kwargs


@dataclass
class PruneGroup:
    """A coupled set of layers torch-pruning prunes together, named by its root layer."""

    root: str  # the layer whose output channels lead the group
    out_layers: list[str]  # layers losing output channels (the root first)
    in_layers: list[str]  # layers losing input channels
    channels: int  # the root's output channels (or heads x head size for attention)
    heads: int | None = None  # attention groups: heads, pruned whole

    @property
    def members(self) -> list[str]:
        return self.out_layers + [n for n in self.in_layers if n not in self.out_layers]


def _named_groups(model: nn.Module, spec: PruneSpec, example) -> list[tuple[PruneGroup, nn.Module]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    names = {m: n for n, m in model.named_modules()}
    out = []
    for group in graph.get_all_groups(ignored_layers=list(spec.ignored_layers),
                                      root_module_types=(nn.Conv2d, nn.Linear)):
        root = group[0].dep.target.module
        outs, ins = [], []
        for dep, _ in group:
            module = dep.target.module
            if not isinstance(module, (nn.Linear, nn.Conv2d)) or module not in names:
                continue
            bucket = outs if graph.is_out_channel_pruning_fn(dep.handler) else ins
            if names[module] not in bucket:
                bucket.append(names[module])
        heads = next((spec.num_heads[m] for m in (dep.target.module for dep, _ in group) if m in spec.num_heads), None)
        out.append((PruneGroup(names[root], outs, ins, int(graph.get_out_channels(root)), heads), root))
    return out


def prunable_groups(model: nn.Module, scenario: Scenario) -> list[PruneGroup]:
    """The coupled groups structured pruning can shrink (torch-pruning's DependencyGraph)."""
    spec = scenario.prune_spec(model)
    return [g for g, _ in _named_groups(model, spec, scenario.example_inputs(2))]


def group_ratio_kwargs(model: nn.Module, config: CompressionConfig, spec: PruneSpec, example) -> dict:
    """MetaPruner ``pruning_ratio_dict`` / ``head_pruning_ratio_dict`` for the config's per-layer ratios.

    An override reaches the group in which a layer it names loses output channels (or, for a layer
    that only loses inputs, such as an FFN down-projection, the groups feeding it), so coupled layers
    are always pruned together. ``skip`` gives the group ratio 0.
    """
    if not config.prune_overrides:
        return {}
    groups = _named_groups(model, spec, example)
    names = layer_names(model)
    chosen: dict[int, float] = {}
    for item in config.prune_overrides:
        hit = set(matching(item.pattern, names))
        touched = [i for i, (g, _) in enumerate(groups) if hit & set(g.out_layers)]
        if not touched:  # layers that only lose inputs (an FFN down-projection): the groups feeding them
            touched = [i for i, (g, _) in enumerate(groups) if hit & set(g.in_layers)]
        if not touched and item.prune_ratio:
            raise ConfigError(f"layer override {item.pattern!r} sets a prune ratio, but structured pruning never "
                              "touches the layers it names (the classifier and other kept layers)")
        for i in touched:
            chosen[i] = 0.0 if item.skip else float(item.prune_ratio)
    ratios, head_ratios = {}, {}
    qkv = dict(spec.num_heads)
    for i, ratio in chosen.items():
        group, root = groups[i]
        ratios[root] = ratio
        if group.heads:
            head_ratio = min(ratio, (group.heads - 1) / group.heads) if group.heads > 1 else 0.0
            for module in qkv:
                if _module_name(model, module) in group.out_layers:
                    head_ratios[module] = head_ratio
    out = {"pruning_ratio_dict": ratios}
    if head_ratios:
        out["head_pruning_ratio_dict"] = head_ratios
    return out


def _module_name(model: nn.Module, module: nn.Module) -> str | None:
    for name, m in model.named_modules():
        if m is module:
            return name
    return None


def prune_structured(model: nn.Module, config: CompressionConfig, scenario: Scenario, seed: int = 0) -> PruneResult:
    spec = scenario.prune_spec(model)
    example = scenario.example_inputs(2)
    before = count_params(model)
    torch.manual_seed(seed)
    kwargs = dict(pruner_kwargs(spec, config.prune_ratio))
    kwargs.update(group_ratio_kwargs(model, config, spec, example))
    notes = []
    pruner = pruner_step(model, example, config.prune_method, scenario, **kwargs)
    if count_params(model) == before and spec.round_to:
        # Rounding down to a multiple of round_to can leave 0 channels, which torch-pruning skips.
        kwargs["round_to"] = None
        pruner = pruner_step(model, example, config.prune_method, scenario, **kwargs)
        notes.append(f"channel counts not rounded to multiples of {spec.round_to} at this ratio")
    model.zero_grad(set_to_none=True)
    if spec.after_prune is not None:
        spec.after_prune(model)
    after = count_params(model)
    if after == before:
        notes.append("no channels could be removed at this ratio")
    return PruneResult(model, history=pruner.pruning_history(), achieved_ratio=1 - after / before,
                       params_before=before, params_after=after, notes=notes)


def apply_masks(model: nn.Module, config: CompressionConfig, scenario: Scenario,
                plan: dict[str, LayerSetting] | None = None) -> list[str]:
    """Attach pruning masks (torch.nn.utils.prune keeps them applied while fine-tuning)."""
    notes = []
    settings = {}
    if config.prune_overrides:
        settings = plan if plan is not None else resolve_layers(model, config)
    for name, module in prunable_layers(model, scenario.prune_spec(model)):
        setting = settings.get(name)
        if setting is not None and setting.skip:
            continue  # a skipped layer keeps every weight
        method = PRUNE_METHODS[config.prune_method]
        amount = setting.prune_ratio if setting is not None and setting.prune_ratio is not None else config.prune_ratio
        if amount <= 0:
            continue
        try:
            torch_prune.custom_from_mask(module, "weight", method.mask(module.weight, amount))
        except ValueError as exc:
            notes.append(f"{name} left dense for {method.name}: {exc}")
    return notes


def remove_masks(model: nn.Module) -> None:
    """Bake masks into the weights so the model is a plain module again."""
    for module in model.modules():
        if torch_prune.is_pruned(module) and hasattr(module, "weight_mask"):
            torch_prune.remove(module, "weight")


def sparsity_of(model: nn.Module, spec: PruneSpec) -> float:
    layers = prunable_layers(model, spec)
    total = sum(m.weight.numel() for _, m in layers)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    return zeros / total if total else 0.0


def prune(model: nn.Module, config: CompressionConfig, scenario: Scenario, device="cpu", seed: int = 0,
          should_stop=None, plan: dict[str, LayerSetting] | None = None) -> PruneResult:
    """Prune ``model`` in place as ``config`` says, then fine-tune ``config.finetune_steps`` steps.

    ``should_stop`` is asked before every fine-tuning step (``Cancelled`` when it says so).
    ``config.recovery == "distill"``: the steps minimise the KL divergence to the logits of ``model``
    as it was before pruning (the uncompressed teacher) instead of the cross-entropy on the labels."""
    teacher = copy.deepcopy(model).eval() if config.recovery == "distill" and config.finetune_steps else None
    if not config.prunes:
        n = count_params(model)
        result = PruneResult(model, params_before=n, params_after=n)
    elif config.is_structured:
        result = prune_structured(model, config, scenario, seed=seed)
    else:
        before = count_params(model)
        result = PruneResult(model, params_before=before, params_after=before,
                             notes=apply_masks(model, config, scenario, plan))
    if config.finetune_steps:  # unpruned too: the sweep's control point gets the same recovery
        settings = scenario.default_train
        torch.manual_seed(seed)  # dropout draws from the global generator: same seed, same fine-tuned bytes
        model.to(device)
        result.finetune_loss = train_steps(model, scenario.splits.train, config.finetune_steps, lr=settings.lr * 0.3,
                                           batch_size=settings.batch_size, seed=seed, device=device,
                                           should_stop=should_stop, threads=settings.threads, teacher=teacher,
                                           schedule=scenario.recovery_schedule)
        model.to("cpu")
    remove_masks(model)
    model.eval()
    if config.is_unstructured:
        result.achieved_ratio = sparsity_of(model, scenario.prune_spec(model))
    return result


def replay_pruning(model: nn.Module, history: list, example_inputs: dict[str, torch.Tensor]) -> None:
    """Prune ``model`` in place exactly as torch-pruning recorded it (``pruner.pruning_history()``)."""
    history = [(str(name), bool(out), [int(i) for i in idx]) for name, out, idx in history]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
        try:
            graph.load_pruning_history(history)
        except (AttributeError, KeyError, IndexError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"the pruning history does not fit the architecture: {exc}") from None


def pruner_step(model: nn.Module, example, method: str, scenario: Scenario, **kwargs):
    """One torch-pruning ``MetaPruner`` step on ``model`` with ``method``'s registered importance; the pruner.

    ``kwargs``: the other MetaPruner arguments (``pruner_kwargs`` and any per-group ratios). A
    method whose importance reads gradients first gets those of one calibration batch (up to 256
    training examples, moved to the model's device). The pruner's ``pruning_history()`` says what went.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch-pruning warns about unwrapped parameters it handles fine
        pruner = tp.pruner.MetaPruner(model, example_inputs=example, importance=_importance(method), **kwargs)
        if PRUNE_METHODS[method].needs_gradients:
            train = scenario.splits.train
            batch = train.first(min(256, len(train)))
            device = next(iter(model.parameters()), torch.empty(0)).device
            _loss_backward(model, Split({k: v.to(device) for k, v in batch.inputs.items()}, batch.labels.to(device)))
        pruner.step()
    return pruner
