"""What a model kind provides, by name: the contract the shared doors call and a test holds every registered
kind to (tests/engine/test_kinds.py). A kind is one folder ``kinds/<name>/`` plus its dashboard module
``ui/kinds/<name>.py``; docs/architecture.md shows one being added.
"""
from __future__ import annotations

# kinds/<name>/engine.py: the functions and modules workflows/ and cli/ call.
ENGINE = {
    "open_sweep": "(scenario, spec, *, baseline, device, remote, latency_kwargs, progress) -> a SweepSession "
                  "(workflows/sweep.py): units, point key, run a unit here or on Ray, compare with the reference",
    "spec_from_dict": "(dict) -> the kind's sweep grid, validated",
    "retime": "(store, run, points, rounds, device, threads, latency_kwargs, progress) -> updated records",
    "analyse": "(scenario, params, store, baseline, device, force, progress, should_stop, on_profile) -> "
               "a results.sensitivity.SensitivityProfile, stored as it grows",
    "sensitivity_params": "(dict) -> the kind's analysis parameters",
    "export": "the module behind workflows/export.py: export_point, evaluate_export, export_summary, "
              "evaluate_warnings",
    "flags": "the module behind the CLI: add_to(parser), refuse(args), spec_from(args), plan_notes(scenario, spec), "
             "point_line(record)",
}
EXPORT = ("export_point", "evaluate_export", "export_summary", "evaluate_warnings")
FLAGS = ("add_to", "refuse", "spec_from", "plan_notes", "point_line")
# a kind whose sensitivity profile is read rather than allocated from also gives the CLI its table
PROFILE_FLAGS = ("sensitivity_params", "profile_rows")

# ui/kinds/<name>.py: what the pages ask the current model's kind for.
UI = ("RAY_TASK", "PROFILE_FIGURES", "SENSITIVITY_INTRO",
      "sweep_form", "plan_text", "demo_spec", "demo_help", "demo_caption", "use_demo_grid",  # Sweep, Overview
      "spec_from_form", "form_values", "after_load",  # recipes and History's "Re-run these settings"
      "sensitivity_form", "profile_caption",  # Sensitivity
      "point_metrics", "export_options", "export_result", "check_result")  # Export
# a kind that loads its model rather than training a baseline draws its own Model page section
UI_LOADED_MODEL = ("model_section",)
