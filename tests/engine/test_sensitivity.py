"""Sensitivity analysis, allocator and allocator points in sweeps (digits, small settings)."""
from __future__ import annotations

import json

import pytest
import torch

from gemini_core.cli import main
from gemini_core.compress import compress
from gemini_core.config import CompressionConfig
from gemini_core.errors import ConfigError
from gemini_core.kinds.classifier.sensitivity import AnalysisParams
from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.measure import accuracy_and_loss
from gemini_core.results.store import Store
from gemini_core.techniques.prune import prunable_groups
from gemini_core.workflows.allocator import allocate, allocation_config, predict, rows_to_choice
from gemini_core.workflows.sensitivity import run_analysis
from gemini_core.workflows.sweep import run_sweep

PARAMS = AnalysisParams(ratios=(0.25, 0.5), bits=(8, 2), max_examples=150, latency_repeats=3)


@pytest.fixture(scope="module")
def analysed(digits, tmp_path_factory):
    scenario, baseline = digits
    store = Store(tmp_path_factory.mktemp("sens") / "gemini.sqlite")
    events = []
    profile = run_analysis(scenario, baseline=baseline, params=PARAMS, store=store, device="cpu", progress=events.append)
    return scenario, baseline, store, profile, events


def test_every_coupled_group_shrinks_consistently_and_the_model_runs(digits):
    scenario, baseline = digits
    groups = prunable_groups(baseline.model, scenario)
    assert [g.root for g in groups] and all(g.out_layers[0] == g.root for g in groups)
    before = dict(baseline.model.named_modules())
    for group in groups:
        config = CompressionConfig(prune_method="l2-structured",
                                   layer_overrides=[{"pattern": group.root, "prune_ratio": 0.5}])
        model = compress(baseline.model, config, scenario).stored_model
        after = dict(model.named_modules())
        kept = {after[n].weight.shape[0] / before[n].weight.shape[0] for n in group.out_layers}
        assert kept == {0.5}, group.root  # every out-layer lost the same share of channels
        for name in group.in_layers:  # and every layer reading them lost the matching inputs
            assert after[name].weight.shape[1] / before[name].weight.shape[1] == 0.5, (group.root, name)
        untouched = [n for n in before if isinstance(before[n], (torch.nn.Conv2d, torch.nn.Linear))
                     and n not in group.members]
        assert all(after[n].weight.shape == before[n].weight.shape for n in untouched)
        assert model(**scenario.example_inputs(3)).shape == (3, 10)


def test_profiles_cover_every_group_layer_and_setting(analysed):
    scenario, baseline, _, profile, events = analysed
    assert profile.status == "complete" and profile.split == "val"
    assert profile.examples == min(len(scenario.splits.val), PARAMS.max_examples)
    val = scenario.splits.val.take(torch.arange(profile.examples))
    assert profile.baseline["accuracy"] == pytest.approx(accuracy_and_loss(baseline.model, val, "cpu")["accuracy"])
    assert [e["group"] for e in profile.pruning] == [g.root for g in prunable_groups(baseline.model, scenario)]
    for entry in profile.pruning:
        assert [r["ratio"] for r in entry["results"]] == [0.25, 0.5]
        assert entry["results"][1]["params_removed"] > entry["results"][0]["params_removed"] > 0
        assert all(-100 <= r["drop_points"] <= 100 and r["loss"] >= 0 for r in entry["results"])
    layers = {e["layer"]: e for e in profile.quantization}
    assert set(layers) == {"features.0", "features.3", "features.7", "classifier.1", "classifier.3"}
    w = baseline.model.get_submodule("features.7").weight.detach()
    assert layers["features.7"]["max_abs_over_std"] == pytest.approx(float(w.abs().max() / w.std()), rel=1e-4)
    assert 0 <= layers["features.7"]["outlier_fraction_6std"] < 0.01
    assert [r["bits"] for r in layers["classifier.1"]["results"]] == [8, 2]
    assert layers["classifier.1"]["results"][0]["kernel"] == "int8-dynamic"  # judged on the kernel it would run
    assert len(events) == profile.total_steps == profile.done_steps == 4 * 2 + 5 * 2 + 1
    lat = profile.latency
    assert {r["layer"] for r in lat["layers"]} == set(layers)
    assert all(0 <= r["share"] <= 1 for r in lat["layers"]) and lat["other_ms_p50"] >= 0
    assert "int8_ms_p50" in {k for r in lat["layers"] if r["layer"] == "classifier.1" for k in r}
    rows, cols, cells = profile.heatmap("quantization")
    assert cols == [8, 2] and len(rows) == len(cells) == 5


def test_analysis_is_stored_and_reused(analysed):
    scenario, baseline, store, profile, _ = analysed
    stored = store.get_analysis(profile.analysis_id)
    assert stored["status"] == "complete" and stored["baseline_key"] == baseline.key
    assert stored["result"]["quantization"] == profile.to_dict()["quantization"]
    assert [a["analysis_id"] for a in store.analyses(baseline.key)] == [profile.analysis_id]
    calls = []
    again = run_analysis(scenario, baseline=baseline, params=PARAMS, store=store, device="cpu", progress=calls.append)
    assert calls == [] and again.to_dict() == profile.to_dict()


def test_cancelled_analysis_keeps_what_it_measured(digits, tmp_path):
    scenario, baseline = digits
    store = Store(tmp_path / "s.sqlite")
    seen = []
    profile = run_analysis(scenario, baseline=baseline, params=AnalysisParams(ratios=(0.5,), bits=(4,), phases=("quantization",),
                                                              max_examples=64),
                           store=store, device="cpu", progress=seen.append, should_stop=lambda: len(seen) >= 2)
    assert profile.status == "cancelled" and profile.done_steps == 2
    assert store.get_analysis(profile.analysis_id)["status"] == "cancelled"
    assert len(store.get_analysis(profile.analysis_id)["result"]["quantization"]) == 2


@pytest.mark.parametrize("budget", [0.0, 0.5, 2.0, 10.0])
def test_allocator_respects_its_budget_on_the_measured_profile(analysed, budget):
    scenario, baseline, _, profile, _ = analysed
    allocation = allocate(profile, "smallest-size", max_accuracy_drop_points=budget)
    pred = allocation.predicted
    assert pred["predicted_accuracy_drop_points"] <= budget + 1e-9
    assert pred["predicted_weight_bytes"] <= pred["fp32_weight_bytes"]
    # the sum of the chosen per-layer/per-group drops is the prediction
    assert sum(r["predicted_drop_points"] for r in allocation.rows) == pytest.approx(pred["predicted_accuracy_drop_points"])
    # the config applies: every pattern names a layer, every layer gets the chosen bits
    bits, ratios = rows_to_choice(profile, allocation.rows)
    compressed = compress(baseline.model, allocation.config, scenario)
    stored_bits = compressed.layer_bits()
    assert {n: b for n, b in stored_bits.items()} == bits
    assert allocation_config(profile, bits, ratios) == allocation.config


@pytest.mark.parametrize("loss_budget", [0.0, 0.01, 0.1])
def test_allocator_respects_a_loss_budget(analysed, loss_budget):
    profile = analysed[3]
    allocation = allocate(profile, "smallest-size", max_accuracy_drop_points=None, max_loss_increase=loss_budget)
    assert allocation.predicted["predicted_loss_increase"] <= loss_budget + 1e-12
    with pytest.raises(ConfigError, match="loss budget"):
        allocate(profile, max_loss_increase=-1)


def test_a_looser_budget_never_gives_a_bigger_model(analysed):
    profile = analysed[3]
    sizes = [allocate(profile, max_accuracy_drop_points=b).predicted["predicted_weight_bytes"] for b in (0, 1, 5, 50)]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0]


def test_speedup_objective_and_bad_budgets(analysed):
    profile = analysed[3]
    fast = allocate(profile, "speedup", target_speedup=1.05, max_accuracy_drop_points=50)
    pred = fast.predicted
    assert pred["predicted_speedup"] >= 1.05 or fast.notes
    assert pred["predicted_accuracy_drop_points"] <= 50
    with pytest.raises(ConfigError, match="target speed-up"):
        allocate(profile, "speedup", target_speedup=0.5)
    with pytest.raises(ConfigError, match="unknown allocation objective"):
        allocate(profile, "fastest")
    with pytest.raises(ConfigError, match="were not profiled"):
        allocate(profile, bits_options=(32, 4))
    with pytest.raises(ConfigError, match="not profiled"):
        rows_to_choice(profile, [{"kind": "layer", "name": "features.0", "bits": 6}])
    assert predict(profile, {"features.0": 32}, {})["predicted_accuracy_drop_points"] == 0


def test_allocation_points_are_measured_next_to_uniform_ones(analysed, tmp_path):
    scenario, baseline, _, profile, _ = analysed
    allocation = allocate(profile, max_accuracy_drop_points=1.0, allow_pruning=False, bits_options=(32, 8, 2))
    spec = SweepSpec(bits=(32, 8), allocations=(allocation.config,))
    assert SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert "allocations" not in SweepSpec(bits=(32, 8)).to_dict()  # old run ids stay
    records = list(run_sweep(scenario, spec, store=Store(tmp_path / "s.sqlite"), device="cpu",
                             latency_kwargs={"min_runs": 3, "min_seconds": 0.0}, baseline=baseline))
    assert [r["status"] for r in records] == ["ok"] * 3
    mixed = [r for r in records if r["config"]["layer_overrides"]]
    assert len(mixed) == 1 and "per-layer" in mixed[0]["label"]
    assert mixed[0]["size_bytes"] < next(r for r in records if r["config"]["bits"] == 32
                                         and not r["config"]["layer_overrides"])["size_bytes"]


def test_cli_sensitivity_prints_a_table_and_writes_json(digits, tmp_path, capsys):
    out = tmp_path / "sens.json"
    assert main(["sensitivity", "--phases", "quantization", "--bits", "8,2", "--max-examples", "100",
                 "--allocate", "max-drop=1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "drop@8b" in text and "features.3" in text and "PREDICTED" in text
    data = json.loads(out.read_text())
    assert data["analysis"]["status"] == "complete" and len(data["analysis"]["quantization"]) == 5
    assert data["allocation"]["predicted"]["predicted_accuracy_drop_points"] <= 1.0


@pytest.mark.parametrize("argv, message", [
    (["sensitivity", "--bits", "5"], "sensitivity bits 5 not supported"),
    (["sensitivity", "--ratios", "0.99"], "outside (0, 0.95]"),
    (["sensitivity", "--phases", "vibes"], "unknown sensitivity phase"),
    (["sensitivity", "--allocate", "max-drop=x"], "needs a number"),
    (["sensitivity", "--allocate", "smallest"], "needs a number"),
    (["sensitivity", "--allocate", "max-loss=oops"], "needs a number"),
    (["sensitivity", "--allocate", "min-size=3"], "unknown budget 'min-size'"),
    (["sensitivity", "--measure"], "--measure measures an allocation"),
    # budgets are checked before the analysis runs (no progress bar, nothing trained or measured)
    (["sensitivity", "--allocate", "max-drop=-1"], "--allocate: the accuracy-drop budget -1.0 must be 0 or more"),
    (["sensitivity", "--allocate", "speedup=0.5"], "--allocate: target speed-up 0.5 must be above 1"),
    (["sensitivity", "--allocate", "max-loss=-0.1"], "--allocate: the loss budget -0.1 must be 0 or more"),
])
def test_cli_sensitivity_bad_input_exits_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_uniform_comparators_are_recovered_exactly_like_the_allocation(analysed, tmp_path, monkeypatch):
    """Issue 18: the allocation and every uniform comparator (quantized-only, unpruned ones included) get
    the same recovery: same steps, rate, batch size, seed and training data; fails if any differs."""
    from gemini_core.techniques import prune as prune_module
    from gemini_core.workflows.allocator import comparison_spec, measure_allocation

    scenario, baseline, _, profile, _ = analysed
    calls = []
    real = prune_module.train_steps

    def spy(model, split, steps, lr, batch_size=64, seed=0, **kwargs):
        calls.append({"steps": steps, "lr": lr, "batch_size": batch_size, "seed": seed, "data": id(split)})
        return real(model, split, steps, lr=lr, batch_size=batch_size, seed=seed, **kwargs)

    monkeypatch.setattr(prune_module, "train_steps", spy)
    allocation = allocate(profile, max_accuracy_drop_points=1.0, allow_pruning=False, bits_options=(32, 8, 2),
                          finetune_steps=3)  # a quantized-only allocation: it is fine-tuned too
    assert not allocation.config.prunes and allocation.config.finetune_steps == 3
    spec = comparison_spec(allocation.config, prune_method="l1-structured", granularity="per-channel",
                           compare_ratios=(0.0, 0.5), compare_bits=(32, 8, 4))
    assert SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert "recover_unpruned" not in SweepSpec(bits=(32, 8)).to_dict()  # old run ids stay
    records = measure_allocation(scenario, baseline, allocation, prune_method="l1-structured",
                                 granularity="per-channel", compare_ratios=(0.0, 0.5), compare_bits=(32, 8, 4),
                                 store=Store(tmp_path / "fair.sqlite"), device="cpu")
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    anchor = [r for r in records if r["config"] == CompressionConfig().to_dict()]
    compared = [r for r in records if r not in anchor]
    assert len(anchor) == 1  # the untouched fp32 reference only anchors ratios
    quantized_only = [r for r in compared if r["config"]["prune_ratio"] == 0 and r["config"]["bits"] < 32
                      and not r["config"]["layer_overrides"]]
    assert {r["config"]["bits"] for r in quantized_only} == {8, 4}
    assert {r["config"]["finetune_steps"] for r in compared} == {3}, [r["label"] for r in compared]
    # one recovery per distinct setting (unpruned, 50% pruned, the allocation), each the same recipe
    assert len(calls) == 3 and all(c == calls[0] for c in calls), calls
    assert calls[0]["steps"] == 3 and calls[0]["data"] == id(scenario.splits.train)


@pytest.mark.parametrize("kwargs, message", [
    ({"ratios": (1.2,)}, "sensitivity ratio 1.2 is outside (0, 0.95]"),
    ({"ratios": ("x",)}, "sensitivity ratio 'x' is not a number"),
    ({"ratios": 0.5}, "sensitivity ratio must be a list, not 0.5"),
    ({"bits": (True,)}, "sensitivity bits True not supported"),  # int(True) is 1: never a profile's bit width
    ({"bits": (32,)}, "sensitivity bits 32 not supported"),
    ({"bits": ("x",)}, "sensitivity bits 'x' not supported"),
    ({"prune_method": "magnitude-unstructured"}, "the pruning profile uses structured pruning"),
    ({"max_examples": True}, "max examples True must be a whole number of at least 1"),
    ({"max_examples": 5.0}, "max examples 5.0 must be a whole number"),  # only an int ever counted here
    ({"phases": ()}, "no sensitivity phase chosen"),
    ({"phases": ("vibes",)}, "unknown sensitivity phase 'vibes'"),
    ({"zz": 1}, "AnalysisParams has no setting 'zz'"),
])
def test_analysis_params_edge_values_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("]", r"\]")) as caught:
        AnalysisParams(**kwargs)
    assert "\n" not in str(caught.value)


def test_analysis_params_edge_values_accepted_as_before():
    import dataclasses

    params = AnalysisParams(ratios=[0.5, 0.25, 0.5, "0.25"], bits=("4", 8.0, 8), phases=["latency", "pruning", "latency"])
    assert params.ratios == (0.25, 0.5) and params.bits == (8, 4) and params.phases == ("latency", "pruning")
    assert AnalysisParams(ratios=(), bits=()).ratios == () and AnalysisParams(granularity="g32").granularity == "group-32"
    assert AnalysisParams() == AnalysisParams.from_dict(AnalysisParams().to_dict()) and len({PARAMS, PARAMS}) == 1
    with pytest.raises(ConfigError, match="sensitivity bits 5 not supported"):
        dataclasses.replace(PARAMS, bits=(5,))
