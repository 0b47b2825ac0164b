"""The LLM as a scenario of the product: registered scenario, sweeps stored point by point, the front with
perplexity (lower is better), export + evaluate reproducing perplexity exactly, GGUF reload, the CLI, the
recipe schema and per-block sensitivity. Tiny random Llama (conftest) in a temporary folder."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from gemini_core.checkpoint.schema import validate_recipe
from gemini_core.cli import main
from gemini_core.errors import CheckpointError, ConfigError, DataError, GeminiError
from gemini_core.kinds.llm import metrics, source
from gemini_core.kinds.llm.export import evaluate_llm_export, export_llm_point
from gemini_core.kinds.llm.point import LLMPointConfig, LLMSettings, measure_llm_point
from gemini_core.kinds.llm.sensitivity import LLMSensitivityParams, analyse_llm
from gemini_core.kinds.llm.sweep import LLMSweepSpec
from gemini_core.results.metrics import PERPLEXITY
from gemini_core.results.pareto import front_for_axes, pareto_front
from gemini_core.results.store import Store
from gemini_core.results.suggest import recommend
from gemini_core.results.table import points_frame
from gemini_core.scenarios import SCENARIOS, get_scenario
from gemini_core.workflows.sweep import run_sweep

TINY = LLMSettings(context_len=64, eval_tokens=256, calib_samples=4, calib_seq_len=64, prefill_tokens=16,
                   prefill_repeats=2, decode_new_tokens=3, decode_repeats=1)


@pytest.fixture()
def scenario(tiny_llm_dir):
    return get_scenario("llm", model=f"hf:{tiny_llm_dir}")


@pytest.fixture(scope="module")
def swept(tiny_llm_dir, tmp_path_factory):
    """A 3-point sweep (reference, RTN 4-bit g32, magnitude 50%) in its own store."""
    store = Store(tmp_path_factory.mktemp("llm_store") / "runs.sqlite")
    spec = LLMSweepSpec(quant_methods=("rtn",), bits=(4,), group_sizes=(32,), prune_methods=("magnitude",),
                        sparsities=(0.5,), settings=TINY)
    records = list(run_sweep(get_scenario("llm", model=f"hf:{tiny_llm_dir}"), spec, store=store))
    return store, spec, records


def test_llm_scenario_is_registered_and_builds(scenario, tiny_llm_dir, tmp_path):
    assert "llm" in SCENARIOS and SCENARIOS["llm"].data_kind == "text"
    split = scenario.text_split
    assert split.source == "builtin:pydoc-topics" and not set(split.calibration) & set(split.evaluation)
    assert scenario.describe()["zero_shot"] is False
    assert scenario.baseline_key() == get_scenario("llm", model=f"hf:{tiny_llm_dir}").baseline_key()
    with pytest.raises(GeminiError, match="smollm2.*hf:"):
        get_scenario("llm", model="gpt2")
    with pytest.raises(DataError, match="needs a CSV"):
        get_scenario("llm", data=str(tmp_path / "a.txt"), label_column="label")


def test_point_config_validates_and_labels():
    assert LLMPointConfig().is_reference and LLMPointConfig().label() == "fp32 (uncompressed)"
    assert LLMPointConfig(prune_method="wanda", pattern="2:4", recovery="distill", recovery_steps=5,
                          quant_method="gptq", bits=4, group_size=64).label() == \
        "wanda 2:4 + distill 5 steps + gptq 4-bit g64"
    for bad, match in (({"bits": 4}, "needs a quantization method"), ({"quant_method": "rtn", "bits": 16}, "2 to 8"),
                       ({"recovery": "distill"}, "go together"), ({"execution": "tensorrt"}, "not available")):
        with pytest.raises(ConfigError, match=match):
            LLMPointConfig(**bad)


@pytest.mark.parametrize("kwargs, message", [
    ({"quant_method": "rtn", "bits": True}, "bits True must be a whole number"),  # lax pydantic would read 1
    ({"quant_method": "rtn", "bits": "4"}, "bits '4' must be a whole number"),  # ... and 4
    ({"prune_method": "wanda", "sparsity": "0.5"}, "sparsity '0.5' is not a number"),
    ({"prune_method": "wanda", "sparsity": True}, "sparsity True is not a number"),
    ({"mlp_ratio": 1.0}, "mlp ratio 1.0 is outside [0, 1)"),
    ({"recovery_steps": -1}, "recovery steps -1 must be 0 or more"),
    ({"pattern": "3:4"}, "unknown pattern '3:4'"),
    ({"quant_method": "rtn", "bits": 4, "group_size": "per-tensor"}, "not per tensor"),
    ({"zz": 1}, "LLMPointConfig has no setting 'zz'"),
])
def test_point_config_edge_values_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")) as caught:
        LLMPointConfig(**kwargs)
    assert "\n" not in str(caught.value)


def test_point_config_edge_values_accepted_as_before():
    import numpy as np

    four = LLMPointConfig(quant_method="rtn", bits=4, group_size=64)
    assert LLMPointConfig(quant_method="rtn", bits=4.0, group_size="g64") == four
    assert type(LLMPointConfig(quant_method="rtn", bits=np.int64(4)).bits) is int  # stored and hashed as an int
    assert LLMPointConfig(prune_method="wanda", pattern="2:4", sparsity=0.7).sparsity == 0.7  # 2:4 fixes it
    assert LLMPointConfig.from_dict(four.to_dict()) == four and {four: 1}[LLMPointConfig(**four.to_dict())] == 1
    with pytest.raises(ConfigError, match="needs a quantization method"):
        dataclasses.replace(LLMPointConfig(), bits=4)


@pytest.mark.parametrize("kwargs, message", [
    ({"context_len": True}, "context len True must be a whole number"),
    ({"context_len": "512"}, "context len '512' must be a whole number"),
    ({"context_len": 512.5}, "context len 512.5 must be a whole number"),  # a count of tokens
    ({"context_len": None}, "context len None must be a whole number"),
    ({"recovery_lr": 0}, "recovery lr 0.0 must be positive"),
    ({"recovery_lr": float("nan")}, "recovery lr nan must be positive"),
    ({"temperature": True}, "temperature True is not a number"),
    ({"decode_new_tokens": 1}, "decode speed needs at least 2 new tokens"),
    ({"stride": 1024}, "stride 1024 must not exceed the context length 512"),
    ({"zz": 1}, "LLMSettings has no setting 'zz'"),
])
def test_llm_settings_edge_values_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message) as caught:
        LLMSettings(**kwargs)
    assert "\n" not in str(caught.value)


def test_llm_settings_edge_values_accepted_as_before():
    made = LLMSettings(context_len=256.0, stride=128, temperature=2, distill_alpha=1.5)
    assert (made.context_len, made.stride, made.temperature, made.distill_alpha) == (256, 128, 2.0, 1.5)
    assert type(made.context_len) is int and LLMSettings.from_dict({"context_len": 256, "zz": 1}).context_len == 256
    assert LLMSettings.from_dict(made.to_dict()) == made and len({made, LLMSettings.from_dict(made.to_dict())}) == 1
    with pytest.raises(ConfigError, match="context len 0 must be a whole number of at least 1"):
        dataclasses.replace(made, context_len=0)


def test_sweep_lands_in_the_store_with_perplexity(swept):
    store, spec, records = swept
    assert spec.n_points() == 3 and [r["label"] for r in records][0] == "fp32 (uncompressed)"
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    stored = store.points(records[0]["run_id"])
    assert len(stored) == 3
    for point in stored:
        assert point["perplexity"] > 1 and point["context_len"] == 64 and point["stride"] == 64
        assert point["tokens_scored"] == 4 * 63  # 4 windows of 64 tokens, 63 targets each
        assert point["execution"] == "torch" and point["config"]["execution"] == "torch"
        assert point["prefill_ms_p10"] <= point["prefill_ms_p50"] <= point["prefill_ms_p90"]
        assert point["decode_tokens_per_s"] > 0 and point["peak_memory_bytes"] > 0 and point["size_bytes"] > 0
    pruned = next(p for p in stored if p["config"]["prune_method"] == "magnitude")
    assert pruned["decoder_sparsity"] == pytest.approx(0.5, abs=0.01)
    # the size axis is the file a user ships: packed codes for a quantized point, floats otherwise
    reference = next(p for p in stored if p["config"]["quant_method"] == "none" and p is not pruned)
    quantized = next(p for p in stored if p["config"]["quant_method"] == "rtn")
    assert reference["size_written"].startswith("float32") and pruned["size_written"].startswith("float32")
    assert quantized["size_written"].startswith("compressed-tensors")
    assert quantized["size_bytes"] < reference["size_bytes"] == pruned["size_bytes"]
    assert store.get_run(records[0]["run_id"])["status"] == "finished"
    again = list(run_sweep(get_scenario("llm", model=records[0]["model"]), spec, store=store))
    assert all(r["reused"] for r in again)  # nothing measured twice


def test_front_is_lower_perplexity_is_better(swept):
    _, _, records = swept
    a = {"kind": "llm", "status": "ok", "perplexity": 10.0, "latency_ms_p50": 5.0, "size_bytes": 100}
    b = {**a, "perplexity": 20.0}
    assert pareto_front([a, b]) == [True, False]
    assert front_for_axes([a, b], "latency_ms_p50", "perplexity") == [True, False]
    df = points_frame(records)
    assert df["is_reference"].sum() == 1
    ref = df[df["is_reference"]].iloc[0]
    assert ref["perplexity_increase_pct"] == 0.0
    best = df.loc[df["perplexity"].idxmin()]
    # the lowest perplexity is dominated only by a point it cannot be told apart from on the same windows
    # (then that point is as good and faster or smaller), as ties within noise go for accuracy
    front = df[df["pareto"]]
    assert bool(best["pareto"]) or any(PERPLEXITY.within_noise(best.to_dict(), p) for p in front.to_dict("records"))
    rec = recommend(df)
    assert "perplexity" in rec.reason and "accuracy" not in rec.reason


def test_cancel_between_points_keeps_finished_points(tiny_llm_dir, tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    spec = LLMSweepSpec(quant_methods=("rtn",), bits=(8, 4), group_sizes=(32,), settings=TINY)
    seen = []
    for record in run_sweep(get_scenario("llm", model=f"hf:{tiny_llm_dir}"), spec, store=store,
                                should_stop=lambda: len(seen) >= 1):
        seen.append(record)
    assert len(seen) == 1 and len(store.points(seen[0]["run_id"])) == 1
    assert store.get_run(seen[0]["run_id"])["status"] == "cancelled"


def test_cancel_inside_a_measurement_acts_before_the_next_window_and_is_stored_as_cancelled(tiny_llm_dir, tmp_path,
                                                                                          monkeypatch):
    """A stop asked while a point's perplexity runs ends it before its next window (not after the whole point,
    which on SmolLM2 is minutes), and the run is stored as "cancelled", the word the job shows."""
    from gemini_core.kinds.llm import metrics

    store = Store(tmp_path / "runs.sqlite")
    spec = LLMSweepSpec(quant_methods=("rtn",), bits=(8, 4), group_sizes=(32,), settings=TINY)
    stop, windows = [False], []
    original = metrics.perplexity

    def perplexity_then_stop(model, ids, *args, **kwargs):
        def counted(*a, **k):
            windows.append(1)
            stop[0] = True  # the user clicks Cancel during the first of the point's 4 windows
            return model(*a, **k)
        return original(counted, ids, *args, **kwargs)

    monkeypatch.setattr(metrics, "perplexity", perplexity_then_stop)
    scenario = get_scenario("llm", model=f"hf:{tiny_llm_dir}")
    sweep = run_sweep(scenario, spec, store=store, should_stop=lambda: stop[0])
    seen = list(sweep)
    assert seen == [] and len(windows) == 1, f"{len(windows)} windows ran after the stop"
    run = store.runs()[0]
    assert run["status"] == "cancelled" and run["points_ok"] == 0


def test_export_and_evaluate_reproduce_perplexity_exactly_and_gguf_reloads(swept, tmp_path):
    store, _, records = swept
    point = next(r for r in records if r["config"]["quant_method"] == "rtn")
    out = export_llm_point(store, point["point_id"], tmp_path / "export", gguf="f32")
    recipe = json.loads((out / "recipe.json").read_text())
    assert validate_recipe(recipe)["kind"] == "llm"
    assert recipe["record"]["perplexity"] == point["perplexity"]  # re-compressed: the same model
    card = (out / "README.md").read_text()
    assert "perplexity (lower is better)" in card and "already quantized" not in card  # a local model: no Q4_1 note
    again = evaluate_llm_export(out)
    assert again["perplexity_matches_record"] and again["perplexity"] == point["perplexity"]
    # the sweep, the export and evaluate report the same shipped bytes: the packed compressed/ files
    assert point["size_bytes"] == recipe["record"]["size_bytes"] == again["size_bytes"]
    assert again["size_written"].startswith("compressed-tensors")
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(out / "model")  # plain transformers reloads the folder
    gguf_model, _ = source.load_gguf(out / "model.gguf")
    ids = torch.tensor([[3, 40, 41, 42, 7, 9]])
    with torch.no_grad():
        assert torch.equal(gguf_model(input_ids=ids).logits, reloaded(input_ids=ids).logits)


def test_the_default_gguf_holds_the_points_grid_and_evaluate_reloads_it_in_its_runtime(swept, tmp_path):
    import importlib.util

    from gguf import GGUFReader

    store, _, records = swept
    point = next(r for r in records if r["config"]["quant_method"] == "rtn")  # RTN 4-bit g32, symmetric
    out = export_llm_point(store, point["point_id"], tmp_path / "export")  # gguf="auto"
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["llm"]["gguf_type"] == "q4_0"
    kinds = {t.name: t.tensor_type.name for t in GGUFReader(str(out / "model.gguf")).tensors}
    assert [k for n, k in kinds.items() if n.startswith("blk.") and k != "F32"] == ["Q4_0"] * 14
    assert "type q4_0 (its 4-bit grid in the blocks" in (out / "README.md").read_text()
    again = evaluate_llm_export(out)["gguf"]
    assert again["type"] == "q4_0"
    assert again["runtime"] == ("llama.cpp" if importlib.util.find_spec("llama_cpp") else "torch")
    # the same codes; f16 scales (and llama.cpp's 8-bit activations, where it runs) move perplexity a little
    assert again["perplexity"] == pytest.approx(point["perplexity"], rel=0.02)


def test_recipe_schema_refuses_a_bad_llm_section(swept, tmp_path):
    store, _, records = swept
    out = export_llm_point(store, records[0]["point_id"], tmp_path / "e", gguf=None)
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["llm"]["gguf_file"] is None
    recipe["llm"]["config"]["bits"] = "4"
    with pytest.raises(CheckpointError, match="llm.config.bits"):
        validate_recipe(recipe)
    del recipe["llm"]
    with pytest.raises(CheckpointError, match="llm section"):
        validate_recipe(recipe)


def test_cli_llm_sweep_export_evaluate(tiny_llm_dir, tmp_path, capsys):
    common = ["--scenario", "llm", "--model", f"hf:{tiny_llm_dir}"]
    rc = main(["sweep", *common, "--quant", "rtn", "--quant-bits", "8", "--group-size", "32", "--context-len", "64",
               "--eval-tokens", "128", "--calib-samples", "2", "--calib-seq-len", "32", "--name", "cli llm"])
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in lines] == ["fp32 (uncompressed)", "rtn 8-bit g32"]
    assert all(r["perplexity"] > 1 and r["context_len"] == 64 for r in lines)
    rc = main(["export", "--point", str(lines[1]["point_id"]), "--out", str(tmp_path / "x"), "--gguf", "none"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["perplexity"] == lines[1]["perplexity"]
    assert main(["evaluate", str(tmp_path / "x")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["perplexity_matches_record"] and evaluated["perplexity"] == lines[1]["perplexity"]
    assert main(["sweep", *common, "--bits", "8"]) == 2  # a classifier grid flag: one clear line
    assert "classifier grid flags" in capsys.readouterr().err
    assert main(["sweep", "--scenario", "digits", "--quant", "rtn"]) == 2
    assert "use them with --scenario llm" in capsys.readouterr().err


def test_sensitivity_per_block_names_blocks_to_keep(scenario, tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    profile = analyse_llm(scenario, LLMSensitivityParams(bits=(4, 2), group_size=32, eval_tokens=128,
                                                         context_len=64, keep=1), store=store)
    assert profile.status == "complete" and [e["layer"] for e in profile.quantization] == ["block 0", "block 1"]
    assert all(len(e["results"]) == 2 for e in profile.quantization)
    keep = profile.params["keep_high_precision"]
    worst = max(profile.quantization, key=lambda e: e["results"][-1]["drop_points"])
    assert keep[0]["block"] == worst["layer"] and keep[0]["bits"] == 2
    # the model is left as it was
    ids = torch.arange(3, 60).reshape(1, -1)
    assert metrics.perplexity(scenario.load().model, ids, 64)["perplexity"] == \
        metrics.perplexity(get_scenario("llm", model=scenario.model_spec).load().model, ids, 64)["perplexity"]
    assert store.get_analysis(profile.analysis_id)["status"] == "complete"


def test_measure_llm_point_is_the_one_entry_with_an_execution(scenario):
    lm = scenario.load()
    with pytest.raises(ConfigError, match="not available"):
        measure_llm_point(lm.model, lm.tokenizer, scenario.text_split, execution="tensorrt", settings=TINY)


def test_model_card_of_the_builtin_model_says_its_source_was_4_bit():
    from gemini_core.kinds.llm.card import llm_model_card
    from gemini_core.kinds.llm.source import SMOLLM2_SOURCE

    card = llm_model_card({"label": "rtn 8-bit g64", "source_model": dict(SMOLLM2_SOURCE), "record": {},
                           "scenario": {"arch": {"source": "smollm2"}}, "llm": {}})
    assert "already quantized" in card and "GGUF Q4_1 (4-bit, groups of 32" in card
    assert "at 4 bits with groups of 32 reproduces them and measures nothing" in card


def test_labelled_csv_adds_zero_shot_accuracy(tiny_llm_dir, tmp_path):
    rows = ["text,label"] + [f"The film was {'great' if i % 2 else 'boring'} number {i}.,{'pos' if i % 2 else 'neg'}"
                             for i in range(24)]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    scenario = get_scenario("llm", model=f"hf:{tiny_llm_dir}", data=str(tmp_path / "reviews.csv"),
                            label_column="label")
    zero = scenario.zero_shot()
    assert len(zero.texts) == 6 and set(zero.label_words) == {"neg", "pos"}  # the held-out last quarter
    assert not set(zero.texts) & set(scenario.text_split.calibration)
    lm = scenario.load()
    record = measure_llm_point(lm.model, lm.tokenizer, scenario.text_split, settings=TINY, zero_shot=zero, size=False)
    assert 0 <= record["accuracy"] <= 1 and record["test_n"] == 6 and record["perplexity"] > 1
    # a point on a runtime is scored the same way, with the runtime's own logits
    on_openvino = measure_llm_point(lm.model, lm.tokenizer, scenario.text_split, execution="openvino",
                                    settings=dataclasses.replace(TINY, stride=None), zero_shot=zero, size=False)
    assert on_openvino["execution"] == "openvino" and on_openvino["test_n"] == 6
    assert on_openvino["accuracy"] == record["accuracy"]  # float weights: the same predictions


def test_a_group_size_the_model_cannot_take_is_one_error_before_anything_is_stored(tiny_llm_dir, tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    spec = LLMSweepSpec(quant_methods=("rtn",), bits=(4,), group_sizes=(7,), settings=TINY)
    with pytest.raises(ConfigError, match="group size 7 does not divide the 64 input columns"):
        list(run_sweep(get_scenario("llm", model=f"hf:{tiny_llm_dir}"), spec, store=store))
    assert store.runs() == []


def test_the_classifier_export_paths_hand_llm_points_and_exports_on(swept, tmp_path):
    from gemini_core.checkpoint.archive import zip_export
    from gemini_core.workflows.export import evaluate_export, export_point

    store, _, records = swept
    point = records[-1]
    out = export_point(store, point["point_id"], tmp_path / "via_export_point")
    assert json.loads((out / "recipe.json").read_text())["kind"] == "llm"
    blob = zip_export(out)
    zipped = tmp_path / "x.zip"
    zipped.write_bytes(blob if isinstance(blob, bytes) else blob.read())
    check = evaluate_export(zipped)
    assert check["perplexity_matches_record"] and check["perplexity"] == point["perplexity"]


def test_an_llm_export_with_changed_weights_or_no_listed_weights_is_refused_in_one_line(swept, tmp_path):
    store, _, records = swept
    point = next(r for r in records if r["config"]["quant_method"] == "rtn")
    out = export_llm_point(store, point["point_id"], tmp_path / "export", gguf=None)
    recipe = json.loads((out / "recipe.json").read_text())
    weights = next(p for p in (out / "model").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        evaluate_llm_export(out)
    recipe["files"] = {k: v for k, v in recipe["files"].items() if not k.startswith("model/")}
    (out / "recipe.json").write_text(json.dumps(recipe))
    with pytest.raises(CheckpointError, match="no checksum for the weights"):
        evaluate_llm_export(out)

