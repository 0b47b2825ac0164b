"""Text for a causal LM: built-in (CPython's pydoc topics) or the user's .txt / .jsonl / CSV column,
split by document into a calibration part and an evaluation part that never overlap."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from gemini_core.errors import DataError

BUILTIN_TEXT = "builtin:pydoc-topics"
EVAL_FRACTION = 0.25  # the last quarter of the documents is evaluation, always


@dataclass(frozen=True)
class TextSplit:
    """Documents of one source, cut once: the calibration part comes first, evaluation last."""

    source: str
    calibration: tuple[str, ...]
    evaluation: tuple[str, ...]

    def calibration_text(self) -> str:
        return "\n\n".join(self.calibration)

    def evaluation_text(self) -> str:
        return "\n\n".join(self.evaluation)


def builtin_documents() -> list[str]:
    # Ships with CPython (about 65,000 words of the language reference): no download.
    from pydoc_data.topics import topics

    return [text.strip() for text in topics.values() if text.strip()]


def _txt_documents(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [part.strip() for part in text.split("\n\n") if part.strip()]


def _jsonl_documents(path: Path, field: str) -> list[str]:
    docs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path.name} line {number} is not valid JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get(field), str):
            raise DataError(f"{path.name} line {number} has no text field {field!r}")
        docs.append(row[field])
    return docs


def _csv_documents(path: Path, column: str) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if column not in (reader.fieldnames or []):
            raise DataError(f"{path.name} has no column {column!r} (columns: {reader.fieldnames})")
        return [row[column] for row in reader if row[column] and row[column].strip()]


def load_documents(source: str, field: str = "text") -> list[str]:
    """``builtin:pydoc-topics``, a .txt (paragraphs), a .jsonl (``field``) or a .csv (column ``field``)."""
    if source == BUILTIN_TEXT:
        return builtin_documents()
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"text file {path} does not exist")
    readers = {".txt": _txt_documents, ".jsonl": _jsonl_documents, ".csv": _csv_documents}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path.name}: text must be .txt, .jsonl or .csv")
    docs = reader(path) if reader is _txt_documents else reader(path, field)
    if not docs:
        raise DataError(f"{path.name} holds no text")
    return docs


def split_documents(docs: list[str], source: str, eval_fraction: float = EVAL_FRACTION) -> TextSplit:
    if not 0 < eval_fraction < 1:
        raise DataError(f"evaluation fraction must be between 0 and 1, not {eval_fraction}")
    if len(docs) < 2:
        raise DataError(f"{source}: need at least 2 documents to keep calibration and evaluation apart")
    n_eval = min(len(docs) - 1, max(1, round(len(docs) * eval_fraction)))
    cut = len(docs) - n_eval
    return TextSplit(source, tuple(docs[:cut]), tuple(docs[cut:]))


def load_split(source: str = BUILTIN_TEXT, field: str = "text") -> TextSplit:
    return split_documents(load_documents(source, field), source)


def _token_ids(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def evaluation_ids(tokenizer, split: TextSplit, max_tokens: int | None = None) -> torch.Tensor:
    """The evaluation tokens (the last ``max_tokens`` of the evaluation part)."""
    ids = _token_ids(tokenizer, split.evaluation_text())
    if max_tokens is not None:
        ids = ids[-max_tokens:]
    if ids.numel() < 2:
        raise DataError(f"{split.source}: the evaluation part has fewer than 2 tokens")
    return ids


def calibration_batch(tokenizer, split: TextSplit, samples: int, seq_len: int) -> torch.Tensor:
    """``samples`` consecutive ``seq_len``-token chunks from the start of the calibration part."""
    ids = _token_ids(tokenizer, split.calibration_text())
    need = samples * seq_len
    if ids.numel() < need:
        raise DataError(f"{split.source}: calibration part has {ids.numel()} tokens, "
                        f"{samples} x {seq_len} = {need} asked")
    return ids[:need].view(samples, seq_len)
