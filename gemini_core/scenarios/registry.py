"""The two extension points of this stage: scenarios by name, and model architectures by kind.

A scenario file registers itself with ``@register_scenario(...)`` and the architectures it builds
with ``register_architecture(...)``, so an export can rebuild a model from its recipe alone and
the CLI, the dashboard and the job planner list scenarios without naming them anywhere else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from gemini_core.errors import CheckpointError, GeminiError

# What a scenario needs from the user: nothing (built in), a table (CSV/TSV), images, or a model; "text":
# built-in text by default, or the user's text file (the causal-LM scenario).
DATA_KINDS = ("builtin", "table", "images", "model", "text")


@dataclass(frozen=True)
class ScenarioEntry:
    name: str  # "digits", or a prefix such as "hf:" followed by a model id or folder
    factory: Callable  # (**options) -> Scenario
    label: str  # one line for pickers: what the data and model are
    data_kind: str
    prefix: bool = False
    # Planning figures on 2 CPU cores, shown as estimates only: seconds per measured point, per
    # pruning setting (prune + recover), and to train the baseline.
    seconds_per_point: float = 1.0
    seconds_per_setting: float = 1.0
    seconds_to_train: float = 60.0
    # Does recovery time grow with the fine-tuning steps (small models), or is it dominated by set-up?
    recovery_scales_with_steps: bool = False

    @property
    def display_name(self) -> str:
        return f"{self.name}<model id or directory>" if self.prefix else self.name


@dataclass(frozen=True)
class Architecture:
    """How to rebuild one kind of model (``arch["model"]``) with fresh weights, from ``scenario.arch()``."""

    kind: str
    rebuild: Callable[[dict], nn.Module]
    inputs: Callable[[dict], dict]  # name -> {"shape": per-example shape, "dtype": "float32" | "int64"}
    after_prune: Callable[[nn.Module], None] | None = None  # bookkeeping torch-pruning does not do


SCENARIOS: dict[str, ScenarioEntry] = {}
ARCHITECTURES: dict[str, Architecture] = {}


def register_scenario(name: str, *, label: str, data_kind: str, prefix: bool = False, **planning):
    """Class decorator: the scenario is built by ``get_scenario(name, **options)``."""
    if data_kind not in DATA_KINDS:
        raise ValueError(f"data_kind must be one of {DATA_KINDS}")

    def wrap(factory):
        SCENARIOS[name] = ScenarioEntry(name, factory, label, data_kind, prefix, **planning)
        return factory

    return wrap


def register_architecture(kind: str, rebuild, inputs, after_prune=None) -> None:
    ARCHITECTURES[kind] = Architecture(kind, rebuild, inputs, after_prune)


def scenario_entry(name: str) -> ScenarioEntry:
    """The entry for ``name`` (``hf:DIR`` finds the ``hf:`` entry)."""
    if name in SCENARIOS and not SCENARIOS[name].prefix:
        return SCENARIOS[name]
    for entry in SCENARIOS.values():
        if entry.prefix and name.startswith(entry.name):
            return entry
    names = ", ".join(e.display_name for e in SCENARIOS.values())
    raise GeminiError(f"unknown scenario {name!r}; choose one of {names}")


def architecture(arch: dict) -> Architecture:
    kind = arch.get("model") if isinstance(arch, dict) else None
    if kind not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {kind!r} in the recipe; this version of gemini cannot rebuild it")
    return ARCHITECTURES[kind]


DEFAULT_MAX_PARAMS = 500_000_000  # BERT-large is 335M; GEMINI_MAX_PARAMS changes it


def max_params() -> int:
    """The parameter cap on any model built from a recipe or a config (``GEMINI_MAX_PARAMS``)."""
    import os

    text = os.environ.get("GEMINI_MAX_PARAMS", "").strip()
    if not text:
        return DEFAULT_MAX_PARAMS
    try:
        value = int(text)
    except ValueError:
        raise GeminiError(f"GEMINI_MAX_PARAMS={text!r} is not a whole number") from None
    if value < 1:
        raise GeminiError(f"GEMINI_MAX_PARAMS={text!r} must be at least 1")
    return value


def estimate_transformer_params(config: dict) -> int:
    """Parameters of a BERT-like encoder from its config's sizes (an estimate: embeddings + layers)."""
    def size(name, default):
        value = config.get(name, default)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default

    hidden, layers = size("hidden_size", 1), size("num_hidden_layers", 1)
    return layers * (4 * hidden * hidden + 2 * hidden * size("intermediate_size", 4 * hidden)) \
        + size("vocab_size", 1) * hidden


def check_param_count(build: Callable[[], nn.Module], what: str) -> dict[str, tuple] | None:
    """Build the model on the ``meta`` device (shapes only, no memory) and refuse it above ``max_params()``.

    Returns the parameter and buffer shapes by name, so a caller can compare them with a file's tensors
    before the real model is allocated; None when the model cannot be built on the meta device (its
    constructor reads tensor values), where the caller's arithmetic estimate is the check.
    """
    import torch

    try:
        with torch.device("meta"):
            model = build()
    except (RuntimeError, NotImplementedError) as exc:
        if "meta" not in str(exc):
            raise
        return None  # this model's constructor computes with its tensors; the caller's estimate stands
    count = sum(p.numel() for p in model.parameters())
    limit = max_params()
    if count > limit:
        raise CheckpointError(f"{what} describes a model of {count:,} parameters, above the limit of {limit:,} "
                              "(GEMINI_MAX_PARAMS changes it)")
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def build_architecture(arch: dict) -> nn.Module:
    """The unpruned architecture with fresh weights, from ``scenario.arch()`` alone (no data, no files).

    Its size is checked first, on the meta device, against ``GEMINI_MAX_PARAMS``.
    """
    entry = architecture(arch)
    config = arch.get("config") if isinstance(arch.get("config"), dict) else None
    if config is not None:
        estimate = estimate_transformer_params(config)
        if estimate > max_params():
            raise CheckpointError(f"the recipe's architecture describes a model of about {estimate:,} parameters "
                                  f"(estimate), above the limit of {max_params():,} (GEMINI_MAX_PARAMS changes it)")
    try:
        check_param_count(lambda: entry.rebuild(arch), "the recipe's architecture")
        return entry.rebuild(arch).eval()
    except (KeyError, TypeError, ValueError, OverflowError, RuntimeError) as exc:
        if isinstance(exc, GeminiError):
            raise
        raise CheckpointError(f"the recipe's architecture record cannot be built: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}") from None


def inputs_from_arch(arch: dict) -> dict:
    return architecture(arch).inputs(arch)


def after_prune(arch: dict, model: nn.Module) -> None:
    """What the scenario's ``PruneSpec.after_prune`` did after pruning (e.g. BERT attention bookkeeping)."""
    hook = architecture(arch).after_prune
    if hook is not None:
        hook(model)
