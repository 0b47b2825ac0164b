"""Untrusted input, class 1: recipe.json fails its schema.

Part of the untrusted-input matrix; the cases' contract and the shared home are in
``untrusted_support.py`` and ``conftest.py``."""
from __future__ import annotations

import json

import pytest

from gemini_core.cli import main

try:
    from tests.engine.untrusted_support import recipe_variant, run_cli
except ImportError:  # pragma: no cover
    from untrusted_support import recipe_variant, run_cli


def _set(path: str, value):
    """An edit that sets ``a.b.c`` (``...del`` deletes it)."""
    def edit(recipe):
        keys = path.split(".")
        node = recipe
        for key in keys[:-1]:
            node = node[key]
        if value == "...del":
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return edit


# == 1. recipe.json schema =====================================================================================
SCHEMA_CASES = [
    ("format-version-string", _set("format_version", "1"), "field format_version"),
    ("format-version-0", _set("format_version", 0), "field format_version"),
    ("format-version-future", _set("format_version", 99), "format version 99"),
    ("missing-scenario", _set("scenario", "...del"), "field scenario: Field required"),
    ("missing-config", _set("config", "...del"), "field config: Field required"),
    ("missing-files", _set("files", "...del"), "field files: Field required"),
    ("config-is-list", _set("config", [1, 2]), "field config"),
    ("scenario-name-number", _set("scenario.name", 5), "field scenario.name"),
    ("arch-missing", _set("scenario.arch", "...del"), "field scenario.arch"),
    ("arch-is-list", _set("scenario.arch", [1]), "field scenario.arch"),
    ("arch-unknown-model", _set("scenario.arch.model", "Transformer9000"), "unknown architecture 'Transformer9000'"),
    ("height-string", _set("scenario.arch.height", "8"), "field scenario.arch.height"),
    ("height-negative", _set("scenario.arch.height", -8), "field scenario.arch.height"),
    ("width-huge", _set("scenario.arch.width", 10 ** 9), "field scenario.arch.width"),
    ("height-float", _set("scenario.arch.height", 8.5), "field scenario.arch.height"),
    ("in-channels-missing", _set("scenario.arch.in_channels", "...del"), "field scenario.arch.in_channels"),
    ("num-classes-1", _set("scenario.arch.num_classes", 1), "field scenario.arch.num_classes"),
    ("width-mult-0", _set("scenario.arch.width_mult", 0), "field scenario.arch.width_mult"),
    ("width-mult-bool", _set("scenario.arch.width_mult", True), "field scenario.arch.width_mult"),
    ("sha256-not-hex", lambda r: r["files"].update({"model.safetensors": {"sha256": "zz"}}),
     "field files.model.safetensors.sha256"),
    ("files-entry-string", lambda r: r["files"].update({"model.safetensors": "abc"}), "field files.model.safetensors"),
    ("batch-size-string", _set("record.batch_size", "32"), "field record.batch_size"),
    ("batch-size-5e7", _set("record.batch_size", 50_000_000), "field record.batch_size"),
    ("accuracy-above-1", _set("record.accuracy", 7), "field record.accuracy"),
    ("layer-bits-string", _set("layer_bits", {"conv1": "8"}), "field layer_bits.conv1"),
    ("sparse-names-number", _set("sparse_names", 3), "field sparse_names"),
    ("history-not-list", _set("pruning.history", "rm -rf"), "field pruning.history"),
    ("options-nested", _set("scenario.options", {"data": {"path": "/etc/passwd"}}), "field scenario.options.data"),
    ("recipe-is-list", lambda r: [r], "is not a gemini export recipe"),
    ("format-other", _set("format", "pytorch"), "is not a gemini export recipe"),
]


@pytest.mark.parametrize("case_id, edit, message", SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES])
def test_recipe_schema(case_id, edit, message, home, export_dir, tmp_path, monkeypatch, capsys):
    home_path, run_id = home
    folder = recipe_variant(export_dir, tmp_path, edit)
    line = run_cli(["evaluate", str(folder), "--device", "cpu"], home_path, monkeypatch, capsys, run_id)
    assert message in line, line


def test_recipe_without_edits_still_evaluates(home, export_dir, monkeypatch, capsys):
    """The matrix can fail: the same export, unedited, evaluates (exit 0)."""
    monkeypatch.setenv("GEMINI_HOME", str(home[0]))
    assert main(["evaluate", str(export_dir), "--device", "cpu", "--batch-size", "8"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy_matches_record"]


# == 1b. the LLM section: every setting bounded, no field the schema does not know ============================
# Each of these ran on main (decode_new_tokens 1e9 until it was killed): the guard ``llm_never_loaded`` fails
# the case if the model, the GGUF or the packed folder is reached before the recipe is refused.
LLM_SCHEMA_CASES = [
    ("llm-decode-new-tokens-1e9", _set("llm.settings.decode_new_tokens", 10 ** 9), "field llm.settings.decode_new_tokens"),
    ("llm-decode-new-tokens-1", _set("llm.settings.decode_new_tokens", 1), "field llm.settings.decode_new_tokens"),
    ("llm-decode-repeats-1e6", _set("llm.settings.decode_repeats", 10 ** 6), "field llm.settings.decode_repeats"),
    ("llm-prefill-repeats-1e6", _set("llm.settings.prefill_repeats", 10 ** 6), "field llm.settings.prefill_repeats"),
    ("llm-prefill-tokens-1e9", _set("llm.settings.prefill_tokens", 10 ** 9), "field llm.settings.prefill_tokens"),
    ("llm-context-len-1m", _set("llm.settings.context_len", 1 << 20), "field llm.settings.context_len"),
    ("llm-recovery-batch-1e6", _set("llm.settings.recovery_batch", 10 ** 6), "field llm.settings.recovery_batch"),
    ("llm-recovery-lr-string", _set("llm.settings.recovery_lr", "1e-4"), "field llm.settings.recovery_lr"),
    ("llm-recovery-lr-10", _set("llm.settings.recovery_lr", 10.0), "field llm.settings.recovery_lr"),
    ("llm-temperature-0", _set("llm.settings.temperature", 0), "field llm.settings.temperature"),
    ("llm-distill-alpha-2", _set("llm.settings.distill_alpha", 2), "field llm.settings.distill_alpha"),
    ("llm-zero-shot-examples-1e9", _set("llm.settings.zero_shot_examples", 10 ** 9),
     "field llm.settings.zero_shot_examples"),
    ("llm-stride-above-context", _set("llm.settings.stride", 128), "field llm.settings.stride"),
    ("llm-settings-unknown-field", _set("llm.settings.decode_forever", True),
     "field llm.settings.decode_forever: Extra inputs are not permitted"),
    ("llm-config-unknown-field", _set("llm.config.turbo", True), "field llm.config.turbo: Extra inputs"),
    ("llm-section-unknown-field", _set("llm.run_this", "x"), "field llm.run_this: Extra inputs"),
    ("llm-top-level-unknown-field", _set("surprise", {"a": 1}), "field surprise: Extra inputs"),
    ("llm-file-entry-unknown-field", lambda r: r["files"]["model.gguf"].update(open="/etc/passwd"),
     "field files.model.gguf.open: Extra inputs"),
    ("llm-gguf-type-unknown", _set("llm.gguf_type", "q2_k_xxl"), "field llm.gguf_type"),
]


@pytest.mark.parametrize("case_id, edit, message", LLM_SCHEMA_CASES, ids=[c[0] for c in LLM_SCHEMA_CASES])
def test_llm_recipe_schema(case_id, edit, message, home, llm_export_dir, tmp_path, monkeypatch, capsys,
                           llm_never_loaded):
    folder = recipe_variant(llm_export_dir, tmp_path, edit)
    line = run_cli(["evaluate", str(folder)], home[0], monkeypatch, capsys, home[1])
    assert message in line, line


# == 1c. values checked for meaning, not only type: the config must describe the weights stored ===============
def _both_configs(**values):
    """An LLM recipe keeps its point in ``config`` and ``llm.config``: a sender edits both."""
    def edit(recipe):
        recipe["config"].update(values)
        recipe["llm"]["config"].update(values)
    return edit


MEANING_CASES = [
    # classifier exports (digits, 8-bit)
    ("config-empty-on-8-bit", "classifier", _set("config", {}), "field config.bits: Field required"),
    ("config-bits-0", "classifier", _set("config.bits", 0), "field config.bits"),
    ("config-bits-4-on-8-bit", "classifier", _set("config.bits", 4),
     "field config.bits does not fit model.safetensors: the recipe says 4 bits, the file stores 8-bit codes"),
    ("config-bits-32-on-8-bit", "classifier", _set("config.bits", 32),
     "field config.bits does not fit model.safetensors: the recipe says 32 bits, the file stores 8-bit codes"),
    ("layer-bits-4-on-8-bit", "classifier", lambda r: r.update(layer_bits={k: 4 for k in r["layer_bits"]}),
     "does not fit model.safetensors: the recipe says 4 bits, the file stores 8-bit codes"),
    # LLM exports (RTN 8-bit g32)
    ("llm-config-differs-from-llm-config", "llm", _set("config.bits", 4), "field config differs from llm.config"),
    ("llm-bits-0", "llm", _both_configs(bits=0), "config.bits: Input should be greater than or equal to 2"),
    ("llm-bits-4-on-8-bit", "llm", _both_configs(bits=4),
     "field llm.config.bits does not fit compressed/: the recipe says 4 bits, the file stores 8-bit codes"),
    ("llm-group-64-on-g32", "llm", _both_configs(group_size=64),
     "field llm.config.group_size does not fit compressed/: the recipe says groups of 64, the file stores groups of 32"),
    ("llm-no-method-8-bits", "llm", _both_configs(quant_method="none"),
     "field llm.config: 8 bits needs a quantization method"),
    ("llm-recovery-without-steps", "llm", _both_configs(recovery="distill"), "field llm.config: recovery"),
    ("llm-execution-unknown", "llm", _both_configs(execution="tensorrt"), "field llm.config: LLM execution"),
    ("llm-gguf-type-without-file", "llm", _set("llm.gguf_file", None), "field llm.gguf_type"),
]


@pytest.mark.parametrize("case_id, kind, edit, message", MEANING_CASES, ids=[c[0] for c in MEANING_CASES])
def test_recipe_values_mean_what_is_stored(case_id, kind, edit, message, home, export_dir, llm_export_dir, tmp_path,
                                           monkeypatch, capsys, llm_never_loaded):
    folder = recipe_variant(export_dir if kind == "classifier" else llm_export_dir, tmp_path, edit)
    line = run_cli(["evaluate", str(folder), "--device", "cpu"], home[0], monkeypatch, capsys, home[1])
    assert message in line, line


def test_the_llm_export_without_edits_still_evaluates(home, llm_export_dir, monkeypatch, capsys):
    """The LLM cases can fail: the same export, unedited, evaluates (exit 0) and reproduces its perplexity."""
    monkeypatch.setenv("GEMINI_HOME", str(home[0]))
    assert main(["evaluate", str(llm_export_dir)]) == 0, capsys.readouterr().err
    record = json.loads(capsys.readouterr().out)
    assert record["perplexity_matches_record"] and record["gguf"]["type"] == "q8_0"
    assert record["compressed_tensors"]["relative_diff"] < 0.05


def test_the_products_own_llm_export_with_few_eval_tokens_evaluates(tiny_llm_dir, tmp_path, monkeypatch, capsys):
    """sweep --eval-tokens 64, export, evaluate: the product's own export is evaluable again (exit 0). On main the
    GGUF reload asked for more tokens than the export was measured on (its prefill of 128) and refused."""
    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "home"))
    common = ["--scenario", "llm", "--model", f"hf:{tiny_llm_dir}"]
    assert main(["sweep", *common, "--quant", "rtn", "--quant-bits", "8", "--group-size", "32", "--context-len", "64",
                 "--eval-tokens", "64", "--calib-samples", "2", "--calib-seq-len", "32", "--name", "few tokens"]) == 0
    point = [json.loads(line) for line in capsys.readouterr().out.splitlines()][-1]
    assert main(["export", "--point", str(point["point_id"]), "--out", str(tmp_path / "x")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "x")]) == 0, capsys.readouterr().err
    record = json.loads(capsys.readouterr().out)
    assert record["perplexity_matches_record"] and record["gguf"]["type"] == "q8_0"
