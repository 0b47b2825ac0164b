"""The dashboard's last choices in the home folder (``ui_state.json``), so they survive a server restart.

What is kept: the current model, the Model page's form (data file, an upload by the path it was saved
under, columns, header, training mode), the Sweep page's form, the selected point and the run opened
in History. It is read once per server process and written (atomically, only when it changed) at the
end of every page run. Tabs share it: the last writer wins, as with the process memory it backs.

The file is untrusted input like any other: anything that is not a JSON object under the size and nesting
caps is ignored as a whole and kept aside under another name (``ui_state.json.damaged-<time>``), so the next
save writes a fresh one and nobody has to delete it by hand; each entry is checked (types, bounds, known keys,
a scenario that exists, data paths and model folders inside the typed-path roots); an entry that fails is
dropped and the problem said in one line. No Streamlit here: the pages call ``load`` / ``save`` through
``ui.state``.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from gemini_core.errors import GeminiError
from gemini_core.fsio import write_file_atomic
from gemini_core.paths import home_dir, is_local_source

FILE_NAME = "ui_state.json"
MAX_BYTES = 256 * 1024
# What the kept choices nest to is 4 (model -> options -> a list); a deeper file is not ours, and Python's
# JSON parser would recurse once per level (thousands of levels end in RecursionError, on every page).
MAX_DEPTH = 8
ASIDE_MARK = ".damaged-"
MAX_TEXT = 4096
VERSION = 1
MODEL_FORM_KEYS = ("m_scenario", "m_data_path", "m_header", "m_text_col", "m_label_col", "m_hf_source",
                   "m_images_path", "m_mode")
SWEEP_LIST_KEYS = ("sw_methods", "sw_ratios", "sw_bits", "sw_gran", "sw_exec", "sw_ft")
RUN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
PATH_KEYS = ("m_data_path", "m_images_path")


def state_path() -> Path:
    return home_dir() / FILE_NAME


def _scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= MAX_TEXT)


def _plain(value) -> bool:
    return _scalar(value) or (isinstance(value, list) and len(value) <= 100 and all(_scalar(v) for v in value))


def _check_path(value, roots_check) -> None:
    if value is not None and value != "":
        roots_check(str(value))


def _check_source(source, roots_check, what: str = "model folder") -> None:
    """A model source (hub id or folder): a folder must lie inside the typed-path roots, as when typed."""
    if isinstance(source, str) and source.strip() and is_local_source(source):
        roots_check(source.strip(), what)


def _model(value, roots_check) -> dict:
    from gemini_core.scenarios.registry import scenario_entry

    if not isinstance(value, dict) or not isinstance(value.get("scenario"), str):
        raise ValueError("not an object with a scenario name")
    scenario_entry(value["scenario"])  # GeminiError: a scenario this version does not have
    model = {"scenario": value["scenario"], "options": value.get("options") or {},
             "train": value.get("train"), "adaptive": value.get("adaptive")}
    for part in ("options", "train", "adaptive"):
        item = model[part]
        if item is not None and (not isinstance(item, dict) or len(item) > 50
                                 or not all(isinstance(k, str) and _plain(v) for k, v in item.items())):
            raise ValueError(f"{part} is not an object of plain values")
    for key in ("data", "test_data"):
        _check_path(model["options"].get(key), roots_check)
    if model["scenario"].startswith("hf:"):  # the classifier's hf:<id or folder>
        _check_source(model["scenario"][3:], roots_check)
    spec = model["options"].get("model")
    if isinstance(spec, str) and spec.startswith("hf:"):  # the causal LM's hf:<folder>
        _check_source(spec[3:], roots_check)
    return model


def _model_form(value, roots_check) -> dict:
    if not isinstance(value, dict):
        raise ValueError("not an object")
    form = {k: v for k, v in value.items() if k in MODEL_FORM_KEYS}
    bad = [k for k, v in form.items() if not _scalar(v)]
    if bad:
        raise ValueError(f"{bad[0]} is not a plain value")
    for key in PATH_KEYS:
        _check_path(form.get(key), roots_check)
    _check_source(form.get("m_hf_source"), roots_check, "model directory")
    return form


def _sweep_form(value, _roots_check) -> dict:
    if not isinstance(value, dict):
        raise ValueError("not an object")
    form = {}
    for key in SWEEP_LIST_KEYS:
        if key in value:
            item = value[key]
            if not isinstance(item, list) or len(item) > 100 or not all(
                    _scalar(v) and not isinstance(v, bool) for v in item):
                raise ValueError(f"{key} is not a list of values")
            form[key] = item
    if "sw_batch" in value:
        batch = value["sw_batch"]
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 4096:
            raise ValueError("sw_batch is not a whole number from 1 to 4096")
        form["sw_batch"] = batch
    if value.get("sw_name") is not None:
        if not isinstance(value["sw_name"], str) or len(value["sw_name"]) > 200:
            raise ValueError("sw_name is not a short text")
        form["sw_name"] = value["sw_name"]
    return form


def _point_id(value, _roots_check) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("not a point id")
    return value


def _run_id(value, _roots_check) -> str:
    if not isinstance(value, str) or not RUN_ID.match(value):
        raise ValueError("not a run id")
    return value


CHECKS = {"model": _model, "model_form": _model_form, "sweep_form": _sweep_form,
          "selected_point_id": _point_id, "history_run": _run_id}


def load(roots_check) -> tuple[dict, list[str]]:
    """(the kept choices, problems found) from the home folder's state file; ({}, []) when there is none.

    ``roots_check(path, what)`` raises GeminiError for a path outside the typed-path roots. A file that cannot
    be used as a whole is moved aside (its problem says where), so that the next save starts a new one.
    """
    path = state_path()
    try:
        if not path.exists() and not path.is_symlink():
            return {}, []
        if not path.is_file():
            return {}, [_set_aside(path, "is not a file; the saved dashboard state is ignored")]
        with open(path, "rb") as handle:  # never more than the cap, whatever the size said a moment ago
            raw = handle.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            return {}, [_set_aside(path, f"is over {MAX_BYTES // 1024} KB; the saved dashboard state is ignored")]
        text = raw.decode("utf-8")
        depth = nesting_depth(text)
        if depth > MAX_DEPTH:
            return {}, [_set_aside(path, f"nests {depth} levels deep, more than the {MAX_DEPTH} a dashboard state "
                                         "has; the saved dashboard state is ignored")]
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return {}, [_set_aside(path, f"cannot be read ({type(exc).__name__}); the saved dashboard state is ignored")]
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return {}, [_set_aside(path, f"is not a version-{VERSION} dashboard state; it is ignored")]
    kept, problems = {}, []
    for key, check in CHECKS.items():
        if key not in data:
            continue
        try:
            kept[key] = check(data[key], roots_check)
        except (ValueError, TypeError, GeminiError) as exc:
            problems.append(f"{path}: the saved {key.replace('_', ' ')} was dropped: {str(exc).splitlines()[0][:300]}")
    return kept, problems


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def nesting_depth(text: str) -> int:
    """How deep the brackets of a JSON text nest (strings skipped), counted without parsing it."""
    depth = deepest = 0
    for char in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _set_aside(path: Path, problem: str) -> str:
    """Move a state file that cannot be used out of the way (kept for whoever wants to look at it); the one
    line that says what was wrong and where it went."""
    aside = path.with_name(f"{path.name}{ASIDE_MARK}{time.strftime('%Y%m%d-%H%M%S')}")
    if aside.exists() or aside.is_symlink():
        aside = aside.with_name(f"{aside.name}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.replace(path, aside)
    except OSError as exc:  # a read-only home: the choices are kept in this process only
        return f"{path} {problem}; it could not be moved aside ({exc.strerror or exc}), so it stays as it is"
    return f"{path} {problem}; it was kept aside as {aside.name} and a new one is written"


def dump(memory: dict) -> str:
    """The text ``save`` writes: the kept keys only, sorted, so an unchanged state gives the same text."""
    return json.dumps({"version": VERSION, **{k: memory[k] for k in CHECKS if memory.get(k) is not None}},
                      sort_keys=True, indent=1, default=str)


def save(memory: dict, last_text: str | None) -> str | None:
    """Write the state file atomically when its text changed; the text written (or ``last_text``)."""
    text = dump(memory)
    if text == last_text:
        return last_text
    write_file_atomic(state_path(), text.encode("utf-8"))
    return text
