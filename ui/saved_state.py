"""The dashboard's last choices in the home folder (``ui_state.json``), so they survive a server restart.

What is kept: the current model, the Model page's form (data file, an upload by the path it was saved
under, columns, header, training mode), the Sweep page's form, the selected point and the run opened
in History. It is read once per server process and written (atomically, only when it changed) at the
end of every page run. Tabs share it: the last writer wins, as with the process memory it backs.

The file is untrusted input like any other: anything that is not a JSON object under the size cap is
ignored as a whole, and each entry is checked (types, bounds, known keys, a scenario that exists, data
paths inside the typed-path roots); an entry that fails is dropped and the problem said in one line.
No Streamlit here: the pages call ``load`` / ``save`` through ``ui.state``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from gemini_core.errors import GeminiError
from gemini_core.fsio import write_file_atomic
from gemini_core.paths import home_dir

FILE_NAME = "ui_state.json"
MAX_BYTES = 256 * 1024
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

    ``roots_check(path)`` raises GeminiError for a data path outside the typed-path roots.
    """
    path = state_path()
    try:
        if not path.is_file():
            return {}, [] if not path.exists() else [f"{path} is not a file; the saved dashboard state is ignored"]
        if path.stat().st_size > MAX_BYTES:
            return {}, [f"{path} is over {MAX_BYTES // 1024} KB; the saved dashboard state is ignored"]
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return {}, [f"{path} cannot be read ({type(exc).__name__}); the saved dashboard state is ignored"]
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return {}, [f"{path} is not a version-{VERSION} dashboard state; it is ignored"]
    kept, problems = {}, []
    for key, check in CHECKS.items():
        if key not in data:
            continue
        try:
            kept[key] = check(data[key], roots_check)
        except (ValueError, GeminiError) as exc:
            problems.append(f"{path}: the saved {key.replace('_', ' ')} was dropped: {str(exc).splitlines()[0][:200]}")
    return kept, problems


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
