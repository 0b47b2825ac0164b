"""The ``llm`` scenario: a causal LM (built-in SmolLM2-135M-Instruct, or ``--model hf:<dir>``) and its text
(built-in pydoc topics, or ``--data`` .txt / .jsonl / CSV column; a CSV with ``--label-column`` adds
zero-shot accuracy on its evaluation rows).

It registers itself in the scenarios registry like every scenario file, but lives here, beside the LLM
engine it loads: ``scenarios/`` sits below ``llm/`` in the layers, so a file there could not import it.
Importing ``gemini_core.kinds.llm`` registers it.
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import torch

from gemini_core.errors import DataError, GeminiError
from gemini_core.kinds.llm import text_data
from gemini_core.kinds.llm.point import ZeroShot
from gemini_core.kinds.llm.source import BUILTIN_NAMES, LoadedLM, load_causal_lm
from gemini_core.scenarios.base import Scenario
from gemini_core.scenarios.registry import register_scenario

BUILTIN_MODEL = "smollm2"
OPTIONS = ("model", "data", "text_column", "label_column")


@register_scenario("llm", label="llm: causal language model (built-in SmolLM2-135M, or --model hf:<dir>), "
                                "perplexity on built-in or your text", data_kind="text",
                   seconds_per_point=60.0, seconds_per_setting=60.0, seconds_to_train=60.0)
class LLMScenario(Scenario):
    name = "llm"
    domain = "language"
    is_llm = True
    description = ("Causal language model. Quality is perplexity on held-out text (lower is better); "
                   "the built-in SmolLM2 source weights were already 4-bit (GGUF Q4_1, groups of 32), so "
                   "4-bit group-32 storage of them measures nothing.")

    def __init__(self, model: str | None = None, data: str | None = None, text_column: str | None = None,
                 label_column: str | None = None, **unexpected) -> None:
        super().__init__()
        if unexpected:
            raise GeminiError(f"scenario 'llm' does not use {', '.join(sorted(unexpected))}")
        self.model_spec = str(model or BUILTIN_MODEL).strip()
        if self.model_spec not in BUILTIN_NAMES and not self.model_spec.startswith("hf:"):
            raise GeminiError(f"--model {self.model_spec!r}: the llm scenario takes 'smollm2' (built in) or "
                              "hf:<local folder>")
        self.text_source = str(data) if data else text_data.BUILTIN_TEXT
        self.text_column = text_column or "text"
        self.label_column = label_column
        if label_column and not self.text_source.lower().endswith(".csv"):
            raise DataError("--label-column (zero-shot accuracy) needs a CSV --data file")
        self._lm: LoadedLM | None = None
        self._split: text_data.TextSplit | None = None
        self._zero_shot: ZeroShot | None = None

    @property
    def builtin_model(self) -> bool:
        return self.model_spec in BUILTIN_NAMES

    def load(self, progress=None) -> LoadedLM:
        if self._lm is None:
            self._lm = load_causal_lm(self.model_spec, progress)
        return self._lm

    @property
    def text_split(self) -> text_data.TextSplit:
        if self._split is None:
            if self.label_column:
                texts, _ = _labelled_rows(self.text_source, self.text_column, self.label_column)
                self._split = text_data.split_documents(texts, self.text_source)
            else:
                self._split = text_data.load_split(self.text_source, self.text_column)
        return self._split

    def zero_shot(self, limit: int = 64) -> ZeroShot | None:
        """The labelled evaluation rows (the CSV's last quarter, never calibration), at most ``limit``."""
        if not self.label_column:
            return None
        if self._zero_shot is None:
            texts, labels = _labelled_rows(self.text_source, self.text_column, self.label_column)
            n_eval = len(self.text_split.evaluation)
            texts, labels = texts[-n_eval:][:limit], labels[-n_eval:][:limit]
            words = {label: " " + label for label in sorted(set(labels))}
            self._zero_shot = ZeroShot(texts, labels, words)
        return self._zero_shot

    def load_splits(self):
        raise GeminiError("the llm scenario has text, not labelled splits; use its text_split")

    def arch(self) -> dict:
        return {"scenario": "llm", "model": "causal-lm", "source": self.model_spec}

    def fingerprint(self) -> str:
        split = self.text_split
        blob = json.dumps([split.source, split.calibration, split.evaluation, self.label_column])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def model_fingerprint(self) -> str:
        """A hash of the weights (every tensor's bytes), so a changed model folder is a new baseline."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.load().model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]

    def baseline_key(self) -> str:
        """The model's source, its weights' hash and the text's hash (computed once per scenario object)."""
        if getattr(self, "_baseline_key", None) is not None:
            return self._baseline_key
        blob = json.dumps({"model": self.model_spec, "weights": self.model_fingerprint(),
                           "text": self.fingerprint()}, sort_keys=True)
        self._baseline_key = "llm-" + hashlib.sha256(blob.encode()).hexdigest()[:16]
        return self._baseline_key

    def describe(self) -> dict:
        meta = self.load().metadata if self._lm is not None else {}
        split = self.text_split
        return {"scenario": "llm", "scenario_options": {k: v for k, v in self.options.items() if v is not None},
                "domain": self.domain, "model": self.model_spec, "model_metadata": meta,
                "text_source": split.source, "calibration_documents": len(split.calibration),
                "evaluation_documents": len(split.evaluation), "data_fingerprint": self.fingerprint(),
                "zero_shot": bool(self.label_column), "source_note": meta.get("note")}


def _labelled_rows(path: str, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"text file {file} does not exist")
    with open(file, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for column in (text_column, label_column):
            if column not in (reader.fieldnames or []):
                raise DataError(f"{file.name} has no column {column!r} (columns: {reader.fieldnames})")
        rows = [(r[text_column], str(r[label_column]).strip()) for r in reader
                if r[text_column] and r[text_column].strip() and str(r[label_column] or "").strip()]
    if len(rows) < 2:
        raise DataError(f"{file.name}: need at least 2 labelled rows")
    return [t for t, _ in rows], [label for _, label in rows]
