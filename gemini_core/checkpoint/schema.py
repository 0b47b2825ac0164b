"""The schema of ``recipe.json`` (format version 1), checked before anything is built from a recipe.

A recipe comes from whoever sent the export: every field the loader uses is typed and bounded
here (pydantic, strict types: ``"12"`` is not a number, ``true`` is not 1), so a wrong type, a
missing key or an impossible value is one ``CheckpointError`` naming the field, never a traceback
or a 100,000 x 100,000 layer. Keys this version does not use are kept as they are.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from gemini_core.errors import CheckpointError
from gemini_core.kinds.registry import KINDS
from gemini_core.limits import MAX_BATCH

SCHEMA_VERSION = 1
MAX_CLASSES = 100_000
MAX_SIDE = 4096
MAX_WIDTH = 1 << 16
MAX_IDS = 1 << 24  # users or items of a recommender (each one an embedding row)

Size = Annotated[StrictInt, Field(ge=1, le=MAX_WIDTH)]
Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
Name = Annotated[StrictStr, Field(min_length=1, max_length=500)]
Number = StrictInt | StrictFloat


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class FileEntry(_Open):
    sha256: Sha256
    bytes: Annotated[StrictInt, Field(ge=0)] | None = None


class CnnArch(_Open):
    model: Literal["SmallCNN"]
    in_channels: Annotated[StrictInt, Field(ge=1, le=64)]
    height: Annotated[StrictInt, Field(ge=1, le=MAX_SIDE)]
    width: Annotated[StrictInt, Field(ge=1, le=MAX_SIDE)]
    num_classes: Annotated[StrictInt, Field(ge=2, le=MAX_CLASSES)]
    width_mult: Annotated[StrictInt, Field(ge=1, le=1024)] = 32


class MlpArch(_Open):
    model: Literal["MLP"]
    in_features: Size
    num_classes: Annotated[StrictInt, Field(ge=2, le=MAX_CLASSES)]
    hidden: Size = 128
    preprocessing: dict | None = None


class HfConfig(_Open):
    model_type: Name
    hidden_size: Size | None = None
    num_hidden_layers: Annotated[StrictInt, Field(ge=1, le=128)] | None = None
    num_attention_heads: Annotated[StrictInt, Field(ge=1, le=1024)] | None = None
    intermediate_size: Size | None = None
    vocab_size: Annotated[StrictInt, Field(ge=1, le=1_000_000)] | None = None
    max_position_embeddings: Annotated[StrictInt, Field(ge=1, le=1 << 17)] | None = None
    type_vocab_size: Annotated[StrictInt, Field(ge=1, le=1024)] | None = None


class HfArch(_Open):
    model: Literal["hf"]
    source: Name
    config: HfConfig
    num_labels: Annotated[StrictInt, Field(ge=2, le=MAX_CLASSES)]
    max_length: Annotated[StrictInt, Field(ge=2, le=1 << 17)] = 64


class CausalLmArch(_Open):
    """An LLM export: the model is rebuilt by transformers from ``model/`` (safetensors, no remote code)."""

    model: Literal["causal-lm"]
    source: Name


class RecommenderArch(_Open):
    """A recommender export: rebuilt from ``model.safetensors`` and the recipe's ``recommend.layout``."""

    model: Literal["recommender"]
    family: Literal["mf", "two-tower", "text-two-tower"]
    n_users: Annotated[StrictInt, Field(ge=1, le=MAX_IDS)]
    n_items: Annotated[StrictInt, Field(ge=2, le=MAX_IDS)]
    dim: Size


class ScenarioRecord(_Open):
    name: Name
    options: dict[str, StrictStr | Number | StrictBool | list | None] = {}
    arch: Annotated[CnnArch | MlpArch | HfArch | CausalLmArch | RecommenderArch, Field(discriminator="model")]
    data_fingerprint: StrictStr | None = None
    classes: list[StrictStr] = []
    test_examples: Annotated[StrictInt, Field(ge=0)] | None = None


class Record(_Open):
    batch_size: Annotated[StrictInt, Field(ge=1, le=MAX_BATCH)] | None = None
    accuracy: Annotated[Number, Field(ge=0, le=1)] | None = None
    size_bytes: Annotated[StrictInt, Field(ge=0)] | None = None
    perplexity: Annotated[Number, Field(ge=1)] | None = None
    context_len: Annotated[StrictInt, Field(ge=1, le=1 << 17)] | None = None
    stride: Annotated[StrictInt, Field(ge=1, le=1 << 17)] | None = None


Ratio = Annotated[Number, Field(ge=0, lt=1)]
Count = Annotated[StrictInt, Field(ge=1, le=1 << 20)]


class LlmPointFields(_Open):
    """``gemini_core.kinds.llm.point.LLMPointConfig``, typed and bounded."""

    quant_method: Literal["none", "rtn", "gptq", "awq", "gptq-asym", "gptq-sym-head"]
    bits: Annotated[StrictInt, Field(ge=2, le=32)]
    group_size: Annotated[StrictInt, Field(ge=1, le=MAX_WIDTH)] | None = None
    prune_method: Literal["none", "magnitude", "wanda", "sparsegpt"]
    sparsity: Ratio
    pattern: Literal["unstructured", "2:4"]
    mlp_ratio: Ratio
    head_ratio: Ratio
    recovery: Literal["none", "finetune", "distill"]
    recovery_steps: Annotated[StrictInt, Field(ge=0, le=1 << 20)]
    execution: Name


class LlmSettingsFields(_Open):
    context_len: Count
    stride: Count | None = None
    eval_tokens: Count
    calib_samples: Count
    calib_seq_len: Count


class LlmSection(_Open):
    config: LlmPointFields
    settings: LlmSettingsFields
    text_source: Name
    model_dir: Literal["model"]
    gguf_file: Name | None = None
    openvino_dir: Literal["openvino"] | None = None
    compressed_dir: Literal["compressed"] | None = None


class RecommendPointFields(_Open):
    """``gemini_core.kinds.recommend.compress.RecommendPointConfig``, typed and bounded."""

    embedding_bits: Literal[32, 8, 4, 2]
    hot_share: Annotated[Number, Field(ge=0, lt=1)]
    row_prune_ratio: Annotated[Number, Field(ge=0, le=0.95)]
    dim_prune_ratio: Annotated[Number, Field(ge=0, le=0.9)]
    rank: Annotated[StrictInt, Field(ge=0, le=MAX_WIDTH)]
    qr_divisor: Annotated[StrictInt, Field(ge=0, le=MAX_IDS)]
    tower_prune_ratio: Annotated[Number, Field(ge=0, le=0.9)]
    recovery_steps: Annotated[StrictInt, Field(ge=0, le=1 << 20)]


class RecommendLayout(_Open):
    format: Literal[1]
    arch: dict
    tables: dict[Literal["user_embedding", "item_embedding"], dict]


class RecommendSection(_Open):
    config: RecommendPointFields
    layout: RecommendLayout
    model_file: Literal["model.safetensors"]
    scorer_file: Literal["score.py"]
    weights_sha256: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]


class Pruning(_Open):
    history: list | None = None
    achieved_ratio: Number | None = None
    params_before: StrictInt | None = None
    params_after: StrictInt | None = None
    notes: list | None = None


class Recipe(_Open):
    format: Literal["gemini-compressed"]
    format_version: Annotated[StrictInt, Field(ge=1, le=SCHEMA_VERSION)]
    config: dict
    scenario: ScenarioRecord
    files: dict[Name, FileEntry]
    record: Record | None = None
    pruning: Pruning | None = None
    baseline_pruning_history: list | None = None
    sparse_names: list[StrictStr] | None = None
    layer_bits: dict[StrictStr, Annotated[StrictInt, Field(ge=1, le=32)]] | None = None
    size_bytes: Annotated[StrictInt, Field(ge=0)] | None = None
    kind: StrictStr | None = None  # a registered model kind (checked in validate_recipe)
    llm: LlmSection | None = None
    recommend: RecommendSection | None = None


def _field(loc: tuple) -> str:
    """``("scenario", "arch", "SmallCNN", "height")`` -> ``scenario.arch.height`` (union tags dropped)."""
    tags = {"SmallCNN", "MLP", "hf", "causal-lm", "recommender", "function-after", "int", "float", "str", "bool"}
    return ".".join(str(p) for p in loc if str(p) not in tags and not str(p).startswith(("constrained-", "nullable")))


def validate_recipe(recipe) -> dict:
    """``recipe`` when it matches the schema; CheckpointError naming the first bad field otherwise."""
    if not isinstance(recipe, dict):
        raise CheckpointError("recipe.json is not a JSON object")
    version = recipe.get("format_version")
    if recipe.get("format") == "gemini-compressed" and isinstance(version, int) and version > SCHEMA_VERSION:
        raise CheckpointError(f"the export uses format version {version}; this gemini reads up to "
                              f"{SCHEMA_VERSION}: update gemini")
    arch = (recipe.get("scenario") or {}).get("arch") if isinstance(recipe.get("scenario"), dict) else None
    if isinstance(arch, dict) and arch.get("model") not in ("SmallCNN", "MLP", "hf", "causal-lm", "recommender"):
        raise CheckpointError(f"recipe.json: field scenario.arch.model: unknown architecture {arch.get('model')!r}; "
                              "this version of gemini cannot rebuild it")
    kind = recipe.get("kind")
    if kind is not None:
        if not isinstance(kind, str) or kind not in KINDS:
            raise CheckpointError(f"recipe.json: field kind: unknown model kind {str(kind)[:40]!r}; this version "
                                  f"reads {', '.join(sorted(KINDS))}")
        section = KINDS[kind].recipe_section
        if section and not isinstance(recipe.get(section), dict):
            raise CheckpointError(f"recipe.json: field {section}: an export of kind {kind} needs its {section} "
                                  "section")
    try:
        Recipe.model_validate(recipe)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        where = _field(error["loc"]) or "(top level)"
        raise CheckpointError(f"recipe.json: field {where}: {error['msg']}") from None
    return recipe
