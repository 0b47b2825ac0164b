"""An export's recipe against its weights, from the safetensors header alone, before any module is built.

The header (an 8-byte length, then JSON: the documented safetensors layout, parsed here because the
bytes are already in memory and safetensors has no header-only reader for bytes) gives every
stored tensor's shape; our layout record in its metadata gives the logical shape of quantized and
sparse tensors. Those shapes are counted against ``GEMINI_MAX_PARAMS`` and compared with the
shapes the recipe's architecture describes (built on the meta device where the model allows it,
and from a transformer config's sizes without it), so a recipe that does not describe its weights
is one ``CheckpointError`` naming the recipe field, before any memory is allocated for a model.
"""
from __future__ import annotations

import json

from gemini_core.checkpoint.format import MODEL_FILE
from gemini_core.compress.codec import LAYOUT_KEY
from gemini_core.errors import CheckpointError, GeminiError
from gemini_core.scenarios.registry import architecture, check_param_count
from gemini_core.scenarios.sizes import check_config_fits, check_estimate, check_header_params, validate_sizes

MAX_HEADER_BYTES = 100 * 1024 ** 2  # safetensors' own limit on the JSON header


def stored_shapes(blob: bytes) -> dict[str, tuple[int, ...]]:
    """Logical tensor name -> shape, from the header of ``model.safetensors`` (no tensor is decoded)."""
    try:
        length = int.from_bytes(blob[:8], "little")
        if len(blob) < 8 or length > min(MAX_HEADER_BYTES, len(blob) - 8):
            raise ValueError("the header length points past the end of the file")
        header = json.loads(blob[8: 8 + length])
        layout = json.loads(header.get("__metadata__", {}).get(LAYOUT_KEY, "{}"))
        stored = {name: tuple(int(d) for d in entry["shape"]) for name, entry in header.items()
                  if name != "__metadata__"}
        if layout.get("v") == 2:
            logical = {name: tuple(int(d) for d in item[2]) for name, item in layout.get("q", {}).items()}
            logical.update({name: tuple(int(d) for d in shape) for name, shape in layout.get("s", {}).items()})
        else:  # the full layout of older files
            logical = {name: tuple(int(d) for d in lay["shape"]) for name, lay in layout.items()}
        logical.update({name: shape for name, shape in stored.items() if "::" not in name and name not in logical})
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{MODEL_FILE} has a damaged header: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
    if any(d < 0 for shape in logical.values() for d in shape):
        raise CheckpointError(f"{MODEL_FILE} has a damaged header: a negative tensor size")
    return logical


def _field_of(arch: dict, value: int, path: str = "scenario.arch") -> str | None:
    """The recipe field (dotted path) whose value is ``value``: the size a wrong dimension came from."""
    for key, item in arch.items():
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and item == value:
            return f"{path}.{key}"
        if isinstance(item, dict):
            found = _field_of(item, value, f"{path}.{key}")
            if found:
                return found
    return None


def _mismatch(arch: dict, name: str, file_shape, model_shape) -> CheckpointError:
    differing = [m for f, m in zip(file_shape, model_shape) if f != m] if len(file_shape) == len(model_shape) else []
    field = next((f for f in (_field_of(arch, m) for m in differing) if f), "scenario.arch")
    return CheckpointError(f"recipe.json: field {field} does not fit {MODEL_FILE}: {name} is {list(file_shape)} "
                           f"in the file but {list(model_shape)} by the recipe")


def check_recipe_fits_weights(recipe: dict, blob: bytes) -> dict[str, tuple[int, ...]]:
    """Refuse, before any module is built, weights over the parameter cap or unlike the recipe's architecture.

    A structurally pruned export (a pruning history) may only be smaller than the architecture in each
    dimension; an unpruned one must match exactly. Returns the stored logical shapes.
    """
    arch = recipe["scenario"]["arch"]
    shapes = stored_shapes(blob)
    check_header_params(shapes, MODEL_FILE)
    pruned = bool(recipe.get("baseline_pruning_history") or (recipe.get("pruning") or {}).get("history"))
    config = arch.get("config")
    if isinstance(config, dict):  # a transformer: its sizes against the header, with no model at all
        sizes = validate_sizes(config, "recipe.json: field scenario.arch.config")
        check_estimate(sizes, "the recipe's architecture")
        check_config_fits(sizes, shapes, "recipe.json: field scenario.arch.config", MODEL_FILE, pruned=pruned)
    entry = architecture(arch)
    try:
        model_shapes = check_param_count(lambda: entry.rebuild(arch), "the recipe's architecture")
    except (KeyError, TypeError, ValueError, OverflowError, RuntimeError) as exc:
        if isinstance(exc, GeminiError):
            raise
        raise CheckpointError(f"the recipe's architecture record cannot be built: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
    if model_shapes is None:  # no meta build for this model: the checks above stand
        return shapes
    model_shapes = {k: v for k, v in model_shapes.items() if not k.endswith("num_batches_tracked")}
    extra = sorted(set(shapes) - set(model_shapes) - {k for k in shapes if k.endswith("num_batches_tracked")})
    if extra:
        raise CheckpointError(f"recipe.json: field scenario.arch does not fit {MODEL_FILE}: the file holds {extra[0]}, "
                              "which the recipe's architecture does not have")
    missing = sorted(set(model_shapes) - set(shapes))
    if missing and not pruned:
        raise CheckpointError(f"recipe.json: field scenario.arch does not fit {MODEL_FILE}: the recipe's "
                              f"architecture has {missing[0]}, which the file does not hold")
    wrong = []
    for name, shape in shapes.items():
        expected = model_shapes.get(name)
        if expected is None:
            continue
        fits = (len(shape) == len(expected) and all(f <= m for f, m in zip(shape, expected))) if pruned \
            else shape == expected
        if not fits:
            wrong.append(_mismatch(arch, name, shape, expected))
    if wrong:  # the first whose size names a recipe field (a derived width such as 4 * channels names none)
        raise next((e for e in wrong if "field scenario.arch " not in str(e)), wrong[0])
    return shapes
