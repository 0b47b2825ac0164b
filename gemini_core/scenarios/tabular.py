"""Tabular classification on the user's CSV: numeric and categorical feature columns, an MLP.

Preprocessing is fitted on the training split only (no leakage from validation or test):

* a column is numeric when at least 95% of its filled cells parse as numbers; cells that do not
  parse, and missing cells ("", NA, ?, null, ...), get the training mean (counted in ``notes``);
  numeric columns are then standardised with the training mean and std (std 0 -> 1, as
  ``builtin.standardise`` does);
* other columns are categorical: one-hot over the categories seen in training; unknown or missing
  values encode as all zeros; columns with more than ``MAX_CATEGORIES`` categories are dropped
  (identifiers or free text), as are columns with no values in training.

``preprocessing()`` returns all of it as a JSON-able dict and ``apply_preprocessing`` turns new
rows into model inputs with it, so an exported model can be used on fresh data. Training uses the
same function, so the two paths cannot drift apart.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gemini_core.errors import DataError
from gemini_core.scenarios.base import (
    PruneSpec,
    Scenario,
    Split,
    Splits,
    TrainSettings,
    _last_linear,
    stratified_split,
    train_val_split,
)
from gemini_core.scenarios.models import MLP
from gemini_core.scenarios.registry import register_scenario
from gemini_core.scenarios.table_data import (
    MISSING_MARKERS,
    load_feature_table,
    map_labels,
    refuse_unused_options,
    require_rows,
    split_or_error,
)

MAX_CATEGORIES = 50
NUMERIC_SHARE = 0.95


def _missing_mask(values: pd.Series) -> pd.Series:
    return values.isna() | values.astype(str).str.strip().str.lower().isin(MISSING_MARKERS)


def _as_numbers(values: pd.Series) -> pd.Series:
    """Floats, NaN where the cell is missing or not a number."""
    return pd.to_numeric(values.where(~_missing_mask(values)), errors="coerce")


def _as_categories(values: pd.Series) -> pd.Series:
    return values.where(~_missing_mask(values)).astype("string").str.strip()


def fit_preprocessing(features: pd.DataFrame, train_index: np.ndarray, notes: list[str]) -> dict:
    """Column kinds, training statistics and categories (see module docstring)."""
    numeric, categorical, dropped = [], [], {}
    for column in features.columns:
        values = features[column]
        train_values = values.iloc[train_index]
        filled = ~_missing_mask(train_values)
        if not filled.any():
            dropped[column] = "no values in the training split"
            continue
        numbers = _as_numbers(train_values)
        if numbers.notna().sum() >= NUMERIC_SHARE * filled.sum():
            numeric.append(_numeric_stats(column, numbers))
            continue
        categories = sorted(set(_as_categories(train_values).dropna()))
        if len(categories) > MAX_CATEGORIES:
            dropped[column] = f"{len(categories)} categories (an identifier or free text?)"
            continue
        categorical.append({"column": column, "categories": categories})
    for column, reason in dropped.items():
        notes.append(f"column {column!r} dropped: {reason}")
    return {"numeric": numeric, "categorical": categorical, "dropped": dropped,
            "feature_names": [n["column"] for n in numeric]
            + [f"{c['column']}={v}" for c in categorical for v in c["categories"]]}


def _numeric_stats(column: str, train_numbers: pd.Series) -> dict:
    mean = float(train_numbers.mean())
    # Missing values become the mean, so the std is taken over the imputed training column.
    std = float(train_numbers.fillna(mean).to_numpy(dtype=np.float64).std())
    return {"column": column, "mean": mean, "std": std if std > 0 else 1.0}


MAX_ABS_VALUE = 1e30  # float32 overflows near 3.4e38; a value this large is an error in the data


def _refuse_non_finite(column: str, numbers: pd.Series) -> None:
    """DataError naming the column and the data rows holding inf, -inf or a value beyond +-1e30."""
    values = numbers.to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isnan(values) & (~np.isfinite(values) | (np.abs(values) > MAX_ABS_VALUE)))
    if bad.size:
        rows = ", ".join(str(int(i) + 1) for i in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise DataError(f"column {column!r} holds {bad.size} infinite or out-of-range value(s) (beyond "
                        f"+-{MAX_ABS_VALUE:g}) at data row(s) {rows}; fix or remove them")


def apply_preprocessing(prep: dict, features: pd.DataFrame, notes: list[str] | None = None) -> np.ndarray:
    """Model inputs (rows x features, float32) for ``features`` as read from a file."""
    missing_columns = [c["column"] for c in prep["numeric"] + prep["categorical"] if c["column"] not in features]
    if missing_columns:
        raise DataError(f"the data lacks feature column(s) {', '.join(map(repr, missing_columns))}")
    blocks, imputed = [], 0
    for stats in prep["numeric"]:
        numbers = _as_numbers(features[stats["column"]])
        _refuse_non_finite(stats["column"], numbers)
        imputed += int(numbers.isna().sum())
        values = numbers.fillna(stats["mean"]).to_numpy(dtype=np.float64)
        blocks.append(((values - stats["mean"]) / stats["std"])[:, None])
    for spec in prep["categorical"]:
        values = _as_categories(features[spec["column"]]).fillna("\0missing").to_numpy()
        blocks.append((values[:, None] == np.asarray(spec["categories"], dtype=object)[None, :]).astype(np.float64))
    if imputed and notes is not None:
        notes.append(f"{imputed} missing or non-numeric cells in numeric columns set to the training mean")
    if not blocks:
        raise DataError("no usable feature columns are left (see the notes on dropped columns)")
    return np.concatenate(blocks, axis=1).astype(np.float32)


@register_scenario("tabular", label="tabular: your CSV of feature columns and a label column", data_kind="table",
                   seconds_per_point=0.5, seconds_per_setting=0.3, seconds_to_train=5.0,
                   recovery_scales_with_steps=True)
class TabularScenario(Scenario):
    name = "tabular"
    domain = "tabular"
    default_train = TrainSettings(epochs=60, batch_size=32, lr=1e-3, weight_decay=1e-4, patience=10)

    def __init__(self, data=None, label_column=None, header="infer", seed: int = 0, test_data=None, **other):
        super().__init__()
        refuse_unused_options("tabular", other)
        if not data:
            raise DataError("the tabular scenario needs --data FILE (a CSV of feature columns and a label column)")
        self.data = Path(data).expanduser()
        # A held-out test file: every row of --data trains or validates (85/15), the test file only tests.
        self.test_data = Path(test_data).expanduser() if test_data else None
        self.label_column, self.header, self.seed = label_column, header, int(seed or 0)
        self.description = f"MLP on the columns of {self.data.name}"
        self.notes: list[str] = []
        self._prep: dict | None = None

    def load_splits(self) -> Splits:
        table = load_feature_table(self.data, self.label_column, self.header)
        self.notes = list(table.notes)
        require_rows(len(table.labels))
        labels = table.labels
        if self.test_data is not None:
            train, val = split_or_error(train_val_split, labels, seed=self.seed)
            test = np.arange(0)
        else:
            train, val, test = split_or_error(stratified_split, labels, seed=self.seed)
        prep = fit_preprocessing(table.features, train, self.notes)
        x = apply_preprocessing(prep, table.features, self.notes)
        self._prep = {"label_column": table.label_column, "class_names": table.class_names, **prep}
        labels_t = torch.tensor(np.asarray(labels, dtype=np.int64))

        def make(index):
            return Split({"x": torch.from_numpy(x[index])}, labels_t[torch.as_tensor(index)])

        test_split = make(test) if self.test_data is None else self._test_file_split(table, prep)
        return Splits(make(train), make(val), test_split, table.class_names)

    def _test_file_split(self, table, prep) -> Split:
        """The --test-data file, read with the training file's label column, classes and preprocessing."""
        test_table = load_feature_table(self.test_data, table.label_column, self.header)
        self.notes += [f"test file: {note}" for note in test_table.notes]
        if not len(test_table.labels):
            raise DataError(f"test file {self.test_data.name} has no rows with a label")
        labels = map_labels(test_table.frame[table.label_column], table.class_names, table.label_column,
                            self.test_data.name)
        x = apply_preprocessing(prep, test_table.features, self.notes)
        return Split({"x": torch.from_numpy(x)}, torch.tensor(np.asarray(labels, dtype=np.int64)))

    def preprocessing(self) -> dict:
        """Everything needed to turn raw rows into model inputs (JSON-able)."""
        self.splits  # fitted while loading the splits
        return self._prep

    def in_features(self) -> int:
        return int(self.splits.train.inputs["x"].shape[1])

    def build_model(self):
        torch.manual_seed(self.seed)
        return MLP(self.in_features(), len(self.splits.class_names))

    def arch(self) -> dict:
        return {"scenario": self.name, "model": "MLP", "in_features": self.in_features(),
                "num_classes": len(self.splits.class_names), "preprocessing": self.preprocessing()}

    def prune_spec(self, model) -> PruneSpec:
        return PruneSpec(ignored_layers=[_last_linear(model)], round_to=8)

    def describe(self) -> dict:
        info = super().describe()
        prep = self.preprocessing()
        info.update({"data_file": str(self.data), "features": self.in_features(),
                     "test_file": str(self.test_data) if self.test_data else None,
                     "numeric_columns": [n["column"] for n in prep["numeric"]],
                     "categorical_columns": [c["column"] for c in prep["categorical"]], "notes": self.notes})
        return info
