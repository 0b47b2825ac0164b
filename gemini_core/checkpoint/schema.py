"""The schema of ``recipe.json`` (format version 1), checked before anything is built from a recipe.

A recipe comes from whoever sent the export: every field the loader uses is typed and bounded
here (pydantic, strict types: ``"12"`` is not a number, ``true`` is not 1), so a wrong type, a
missing key or an impossible value is one ``CheckpointError`` naming the field, never a traceback
or a 100,000 x 100,000 layer.

Closed where a value steers what is opened, built or run: the top level, ``files``, ``config``'s bits,
``inputs``, and the whole ``llm`` section (an unknown field there is refused, not ignored). Open where a
section only describes (the measured ``record``, ``versions``, an HF ``config.json``): their keys are kept.

Every path a recipe names (the keys of ``files``, ``llm.model_dir`` / ``gguf_file`` / ``compressed_dir`` /
``openvino_dir``) is a relative path inside the export: refused from its text alone, before anything is
opened, with the same line whether or not the target exists (the line never echoes it).
"""
from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gemini_core.errors import CheckpointError
from gemini_core.kinds.registry import KINDS
from gemini_core.limits import MAX_BATCH
from gemini_core.scenarios.sizes import json_depth

SCHEMA_VERSION = 1
MAX_CLASSES = 100_000
MAX_SIDE = 4096
MAX_WIDTH = 1 << 16
MAX_DEPTH = 32  # nesting of a recipe (ours stays under 10); deeper is refused before any recursive code sees it
MAX_INPUT_ELEMENTS = 1 << 24  # one example's input (a replayed pruning history builds one of zeros)
OUTSIDE = "names a file outside the export"
MAX_IDS = 1 << 24  # users or items of a recommender (each one an embedding row)

Size = Annotated[StrictInt, Field(ge=1, le=MAX_WIDTH)]
Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
Name = Annotated[StrictStr, Field(min_length=1, max_length=500)]
Number = StrictInt | StrictFloat


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def inside_export(rel) -> bool:
    """Is ``rel`` a relative path that stays inside the folder it is joined to, from its text alone (no file
    is looked at: the answer is the same whether or not it exists)? No absolute path, no ``..``, no
    backslash, no drive, no control character, no ``~``."""
    if not isinstance(rel, str) or not 0 < len(rel) <= 500 or rel != rel.strip():
        return False
    if any(ord(c) < 32 or ord(c) == 127 for c in rel) or "\\" in rel or rel.startswith(("/", "~")):
        return False
    parts = rel.split("/")
    return all(part not in ("", ".", "..") for part in parts) and ":" not in parts[0] and \
        PurePosixPath(rel).as_posix() == rel


class FileEntry(_Closed):
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


InputName = Annotated[StrictStr, Field(min_length=1, max_length=64)]


class InputSpec(_Closed):
    """One model input of ``recipe.inputs``: neutral inputs of this shape are built to replay pruning."""

    shape: Annotated[list[Annotated[StrictInt, Field(ge=1, le=MAX_SIDE)]], Field(max_length=4)]
    dtype: Literal["float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"]

    @model_validator(mode="after")
    def _small(self):
        n = 1
        for side in self.shape:
            n *= side
        if n > MAX_INPUT_ELEMENTS:
            raise ValueError(f"one example of {n:,} values, above the limit of {MAX_INPUT_ELEMENTS:,}")
        return self


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
    threads: Annotated[StrictInt, Field(ge=1, le=4096)] | None = None  # evaluate measures at these threads
    accuracy: Annotated[Number, Field(ge=0, le=1)] | None = None
    size_bytes: Annotated[StrictInt, Field(ge=0)] | None = None
    perplexity: Annotated[Number, Field(ge=1)] | None = None
    context_len: Annotated[StrictInt, Field(ge=1, le=1 << 17)] | None = None
    stride: Annotated[StrictInt, Field(ge=1, le=1 << 17)] | None = None


Ratio = Annotated[Number, Field(ge=0, lt=1)]
Count = Annotated[StrictInt, Field(ge=1, le=1 << 20)]
Tokens = Annotated[StrictInt, Field(ge=1, le=1 << 17)]  # a context, a calibration sequence, a prompt
Repeats = Annotated[StrictInt, Field(ge=1, le=100)]
# gemini_core.kinds.llm.point.EXECUTIONS names them; which ones run depends on the machine (checked there)
Execution = Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9._:-]{0,39}$")]
GgufFile = Annotated[StrictStr, Field(min_length=1, max_length=500, pattern=r"\.gguf$")]


class LlmPointFields(_Closed):
    """``gemini_core.kinds.llm.point.LLMPointConfig``, typed and bounded (its meaning: ``LLMPointConfig``)."""

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
    execution: Execution


class LlmSettingsFields(_Closed):
    """Every field of ``gemini_core.kinds.llm.point.LLMSettings``, bounded: evaluate measures with them, so an
    unbounded one (decode_new_tokens 1e9) would run until it is killed. A field left out takes its default."""

    context_len: Tokens
    stride: Tokens | None = None
    eval_tokens: Count
    calib_samples: Annotated[StrictInt, Field(ge=1, le=4096)]
    calib_seq_len: Tokens
    prefill_tokens: Tokens | None = None
    prefill_repeats: Repeats | None = None
    decode_new_tokens: Annotated[StrictInt, Field(ge=2, le=1024)] | None = None
    decode_repeats: Repeats | None = None
    recovery_batch: Annotated[StrictInt, Field(ge=1, le=1024)] | None = None
    recovery_lr: Annotated[Number, Field(gt=0, le=1)] | None = None
    temperature: Annotated[Number, Field(gt=0, le=100)] | None = None
    distill_alpha: Annotated[Number, Field(gt=0, le=1)] | None = None
    zero_shot_examples: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None

    @field_validator("stride")
    @classmethod
    def _stride(cls, stride, info: ValidationInfo):
        context = info.data.get("context_len")
        if stride is not None and context is not None and stride > context:
            raise ValueError(f"stride {stride} is above the context length {context}")
        return stride


class LlmSection(_Closed):
    config: LlmPointFields
    settings: LlmSettingsFields
    text_source: Name
    model_dir: Literal["model"]
    gguf_file: GgufFile | None = None
    gguf_type: Literal["f32", "f16", "q8_0", "q4_0", "q4_1"] | None = Field(default=None, validate_default=True)
    gguf_skipped: Annotated[StrictStr, Field(max_length=2000)] | None = None
    openvino_dir: Literal["openvino"] | None = None
    compressed_dir: Literal["compressed"] | None = None
    compressed_summary: dict | None = None

    @field_validator("gguf_type")
    @classmethod
    def _gguf(cls, gguf_type, info: ValidationInfo):
        if "gguf_file" in info.data and (info.data["gguf_file"] is None) != (gguf_type is None):
            raise ValueError("the GGUF's type and its file go together (gguf_file and gguf_type, both or neither)")
        return gguf_type


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


class ConfigBits(_Open):
    """``config``: the point's settings (the kind's config class checks their meaning); its bits are required."""

    bits: Annotated[StrictInt, Field(ge=2, le=32)]


Text = Annotated[StrictStr, Field(max_length=10_000)]


class Recipe(_Closed):
    format: Literal["gemini-compressed"]
    format_version: Annotated[StrictInt, Field(ge=1, le=SCHEMA_VERSION)]
    config: ConfigBits
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
    inputs: dict[InputName, InputSpec] | None = None
    # what the export describes, written by checkpoint.write and kinds/*/export.py, never used to open or size
    label: Text | None = None
    created_at: Text | None = None
    formats: list[Text] | None = None
    baseline: dict | None = None
    train_settings: dict | None = None
    versions: dict | None = None
    exported_on: dict | None = None
    ideal_size_bytes: Annotated[StrictInt, Field(ge=0)] | None = None
    baseline_fp32_size_bytes: Annotated[StrictInt, Field(ge=0)] | None = None
    execution: dict | None = None
    hf: dict | None = None
    onnx: dict | None = None
    onnx_compressed: dict | None = None
    openvino: dict | None = None
    standalone: dict | None = None
    source: dict | None = None
    sweep_record: dict | None = None
    steps: list | None = None
    source_model: dict | None = None


def _field(loc: tuple) -> str:
    """``("scenario", "arch", "SmallCNN", "height")`` -> ``scenario.arch.height`` (union tags dropped; a bad
    dictionary key is not echoed: ``files.[key]`` names the field, not what the sender wrote)."""
    tags = {"SmallCNN", "MLP", "hf", "causal-lm", "recommender", "function-after", "int", "float", "str", "bool"}
    parts = [str(p) for p in loc if str(p) not in tags and not str(p).startswith(("constrained-", "nullable"))]
    if "[key]" in parts:
        at = parts.index("[key]")
        parts = parts[:at - 1] + parts[at:]
    return ".".join(_short(p) for p in parts)


def _short(part: str) -> str:
    """A key of the recipe in a message: printable, at most 80 characters."""
    text = part if part.isprintable() else ascii(part)[1:-1]
    return text if len(text) <= 80 else text[:77] + "..."


def nesting_depth(value) -> int:
    """How deeply lists and objects nest in ``value`` (iterative: a hostile depth cannot exhaust the stack)."""
    return json_depth(value, MAX_DEPTH)


def _named_paths(recipe: dict) -> list[tuple[str, object]]:
    """(field, path) of every path the recipe names (keys of ``files`` and the LLM section's files/folders)."""
    out = []
    files = recipe.get("files")
    if isinstance(files, dict):
        out += [("files", key) for key in files]
    llm = recipe.get("llm")
    if isinstance(llm, dict):
        out += [(f"llm.{key}", llm[key]) for key in ("model_dir", "gguf_file", "compressed_dir", "openvino_dir")
                if llm.get(key) is not None]
    return out


def validate_recipe(recipe) -> dict:
    """``recipe`` when it matches the schema; CheckpointError naming the first bad field otherwise."""
    if not isinstance(recipe, dict):
        raise CheckpointError("recipe.json is not a JSON object")
    if nesting_depth(recipe) > MAX_DEPTH:
        raise CheckpointError(f"recipe.json is nested too deeply to be a recipe (more than {MAX_DEPTH} levels)")
    for field, path in _named_paths(recipe):  # from the text alone, before anything is opened; never echoed
        if not inside_export(path):
            raise CheckpointError(f"recipe.json: field {field} {OUTSIDE}; an export's files stay inside it")
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
