"""One formatter for figures read by people: binary sizes, times, percentages, ratios, misses."""
from gemini_core.results.units import duration_text, over_bound_text, percent_text, ratio_text, size_text


def test_sizes_are_binary_with_three_digits():
    assert size_text(812) == "812 B"
    assert size_text(16_384) == "16.0 KB"
    assert size_text(88738.6 * 1024) == "86.7 MB"          # never "88738.6 KB"
    assert size_text(525478.9 * 1024) == "513 MB"
    assert size_text(1.2 * 1024 ** 3) == "1.20 GB"
    assert size_text(None) == "–"


def test_times_switch_to_seconds_and_minutes():
    assert duration_text(0.4123) == "0.412 ms"
    assert duration_text(12.34) == "12.3 ms"
    assert duration_text(1.02e4) == "10.2 s"                # never "1.02e+04 ms"
    assert duration_text(204_000) == "3.4 min"


def test_percentages_ratios_and_misses_read_plainly():
    assert percent_text(0.254) == "0.25%" and percent_text(4.46) == "4.5%" and percent_text(37.2) == "37%"
    assert ratio_text(4.5) == "4.50x" and ratio_text(150.2) == "150x"
    assert over_bound_text(0.34) == "by 34%"
    assert over_bound_text(3345.64) == "at 3,347 times its bound"  # never "by 334564%"


def test_the_recommendation_writes_its_figures_with_the_formatter():
    from gemini_core.results.suggest import Constraints, recommend
    from gemini_core.results.table import points_frame

    reference = {"quant_method": "none", "bits": 32, "prune_method": "none", "sparsity": 0.0,
                 "pattern": "unstructured", "mlp_ratio": 0.0, "head_ratio": 0.0, "recovery": "none",
                 "recovery_steps": 0}
    df = points_frame([{"kind": "llm", "point_id": i, "run_id": "r", "label": label, "status": "ok", "config": cfg,
                        "perplexity": ppl, "latency_ms_p50": lat, "size_bytes": size}
                       for i, (label, cfg, ppl, lat, size) in enumerate(
                           [("fp32", reference, 10.0, 10_240.0, 538_000_000),
                            ("rtn 8-bit", {**reference, "quant_method": "rtn", "bits": 8}, 10.4, 10_200.0,
                             90_868_000)], start=1)])
    rec = recommend(df)
    assert "prefill p50 10.2 s" in rec.reason and "size 86.7 MB" in rec.reason, rec.reason
    missed = recommend(df, Constraints(max_latency_ms=3.0))
    assert "misses latency at 3,400 times its bound" in missed.reason, missed.reason


def test_the_model_card_writes_a_file_size_as_the_pages_do():
    from gemini_core.checkpoint.model_card import _figures

    recipe = {"record": {}, "scenario": {"test_examples": 360, "data_fingerprint": "f"}, "size_bytes": 16_384,
              "ideal_size_bytes": 9_000}
    card = "\n".join(_figures(recipe))
    assert f"| model.safetensors | {size_text(16_384)} (16,384 bytes) |" in card and "16.0 KB" in card  # not 16.38
