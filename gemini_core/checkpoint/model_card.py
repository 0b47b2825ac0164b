"""``README.md`` of an export: what was done, the figures, how to load it."""
from __future__ import annotations

from gemini_core.results.units import size_text


def _fmt_bytes(n) -> str:
    return "n/a" if n is None else size_text(n)  # binary units, as on every screen (results.units)


def model_card(recipe: dict, files: list[str] | None = None) -> str:
    sc = recipe["scenario"]
    arch = sc["arch"]
    kind = ((arch.get("config") or {}).get("model_type", "transformers") + " encoder" if arch.get("model") == "hf"
            else arch.get("model"))
    lines = [f"# {sc['name']}: {recipe['label']}", "",
             f"A compressed {kind} for *{sc['name']}* "
             f"({sc.get('description') or 'classification'}), exported by Gemini Compression Studio "
             f"on {recipe['created_at']}.", "", "## What was done", ""]
    lines += _what_was_done(recipe)
    lines += _figures(recipe)
    lines += _how_to_load(recipe)
    lines += ["", "## Files", "", "`recipe.json` holds the full recipe (config, scenario and options, "
              "architecture, training settings, versions, the pruning history) and the SHA-256 of every file "
              "below. No file here is a pickle.", ""]
    lines += [f"- `{rel}`" for rel in (files or [])]
    return "\n".join(lines) + "\n"


def _what_was_done(recipe: dict) -> list[str]:
    cfg, pruning = recipe["config"], recipe["pruning"]
    lines = []
    per_layer_ratio = any(o.get("prune_ratio") for o in cfg.get("layer_overrides") or [])
    if cfg["prune_method"] == "none" or not (cfg["prune_ratio"] or per_layer_ratio):
        lines.append("- Pruning: none.")
    else:
        kind = ("structured (channels / neurons / heads removed; the model is physically smaller)"
                if pruning["history"] else "unstructured (weights set to zero; stored sparse)")
        lines.append(f"- Pruning: {cfg['prune_method']} at {cfg['prune_ratio']:.0%}, {kind}; achieved "
                     f"{pruning['achieved_ratio']:.1%}" + (f", then {cfg['finetune_steps']} fine-tuning steps"
                                                           if cfg["finetune_steps"] else "") + ".")
    if cfg["bits"] <= 8:
        lines.append(f"- Quantization: {cfg['bits']}-bit weights, {cfg['granularity']} scales "
                     f"({'symmetric int8' if cfg['bits'] == 8 else 'affine, zero-point per group'}); "
                     "Linear, Conv2d and Embedding weights.")
    elif cfg["bits"] == 16:
        lines.append("- Precision: bfloat16 weights and compute.")
    else:
        lines.append("- Precision: float32.")
    if cfg.get("layer_overrides"):
        rules = "; ".join(", ".join(f"{k}={v}" for k, v in o.items()) for o in cfg["layer_overrides"])
        lines.append(f"- Per-layer settings (override the above for the layers they name): {rules}.")
    lines.append(f"- Kernels: {recipe['execution']['backend']} (execution `{cfg['execution']}`).")
    for note in pruning.get("notes") or []:
        lines.append(f"- Note: {note}")
    adaptive = (recipe.get("baseline") or {}).get("adaptive") or {}
    if recipe.get("baseline_pruning_history") or adaptive:
        lines.append(f"- Baseline: adaptive training ({adaptive.get('epochs', '?')} epochs"
                     + (f", gradual {adaptive.get('prune_method')} pruning to {adaptive.get('target_ratio', 0):.0%}"
                        f" on a {adaptive.get('schedule')} schedule" if adaptive.get("target_ratio") else "")
                     + (f", quantization-aware at {adaptive['qat_bits']} bits" if adaptive.get("qat_bits") else "")
                     + "); the ratios above are relative to that baseline.")
    return lines


def _figures(recipe: dict) -> list[str]:
    rec, sc = recipe.get("record") or {}, recipe["scenario"]
    lines = ["", "## Measured figures", "",
             f"Measured {'during the sweep' if rec.get('measured_at') != 'export' else 'at export'}"
             f"{' on ' + rec['device'] if rec.get('device') else ''}"
             f"{', %d threads' % rec['threads'] if rec.get('threads') else ''}, test split of "
             f"{sc['test_examples']} examples (data fingerprint `{sc['data_fingerprint']}`).", "",
             "| figure | value |", "|---|---|"]

    def row(name, value):
        lines.append(f"| {name} | {value} |")

    if rec.get("accuracy") is not None:
        row("test accuracy", f"{rec['accuracy']:.4f}")
    if "macro_f1" in rec:
        row("macro F1", f"{rec['macro_f1']:.4f}")
    base = recipe.get("baseline") or {}
    if base.get("test_accuracy") is not None:
        row("baseline test accuracy (fp32, unpruned)", f"{base['test_accuracy']:.4f}")
    row("model.safetensors", f"{_fmt_bytes(recipe['size_bytes'])} ({recipe['size_bytes']:,} bytes)")
    row("ideal size (formula: nonzero weights x bits + scales)", _fmt_bytes(recipe["ideal_size_bytes"]))
    if recipe.get("baseline_fp32_size_bytes"):
        ratio = recipe["baseline_fp32_size_bytes"] / max(recipe["size_bytes"], 1)
        row("baseline fp32 weights", f"{_fmt_bytes(recipe['baseline_fp32_size_bytes'])} ({ratio:.1f}x larger)")
    if "latency_ms_p50" in rec:
        row(f"latency p50 / p90, batch {rec.get('batch_size')}",
            f"{rec['latency_ms_p50']:.3f} / {rec['latency_ms_p90']:.3f} ms")
    if "peak_memory_bytes" in rec:
        row("peak memory (one batch)", _fmt_bytes(rec["peak_memory_bytes"]))
    if "params" in rec:
        row("parameters (nonzero)", f"{rec['params']:,} ({rec.get('nonzero_params', 0):,})")
    if "macs" in rec:
        row("MACs per example (estimate)", f"{rec['macs']:,}")
    if "onnx" in recipe:
        row("ONNX vs torch, max abs diff", f"{recipe['onnx']['max_abs_diff_vs_torch']:.2e}")
    if "hf" in recipe and "max_abs_diff_vs_stored_model" in recipe["hf"]:
        row("hf/ vs stored model, max abs diff", f"{recipe['hf']['max_abs_diff_vs_stored_model']:.2e}")
    return lines


def _how_to_load(recipe: dict) -> list[str]:
    sc = recipe["scenario"]
    lines = ["", "Latency and memory depend on the machine; accuracy and size do not: "
             "`python -m gemini_core evaluate <this folder>` measures them again.", "",
             "## How to load it", "", "```python", "import gemini_core",
             "model = gemini_core.load(\"<this folder>\")  # checks every file's SHA-256 first",
             "logits = model(" + ", ".join(f"{n}=..." for n in recipe["inputs"]) + ")", "```", "",
             "Inputs: " + ", ".join(f"`{n}` {v['dtype']} of shape (batch, {', '.join(map(str, v['shape']))})"
                                    for n, v in recipe["inputs"].items()) + ".",
             f"Classes, in logit order: {', '.join(map(str, sc['classes']))}."]
    if sc["arch"].get("model") == "hf":
        lines += ["", "Text is tokenized with the tokenizer in `tokenizer/` "
                  f"(padding to {sc['arch'].get('max_length')} tokens, truncation on)."]
    if "hf" in recipe:
        lines += ["", "Plain transformers, no gemini code (dequantized float weights):", "", "```python",
                  "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
                  "model = AutoModelForSequenceClassification.from_pretrained(\"<this folder>/hf\")",
                  "tokenizer = AutoTokenizer.from_pretrained(\"<this folder>/hf\")", "```",
                  "", f"({recipe['hf']['note']}.)"]
    if "onnx" in recipe:
        lines += ["", "ONNX Runtime (dequantized float graph, dynamic batch"
                  + (" and sequence" if sc["arch"].get("model") == "hf" else "") + "):", "", "```python",
                  "import onnxruntime as ort",
                  "session = ort.InferenceSession(\"<this folder>/onnx/model.onnx\")",
                  "logits = session.run(None, {" + ", ".join(f"\"{n}\": ..." for n in recipe["inputs"]) + "})[0]",
                  "```"]
    lines += _runtime_formats(recipe)
    return lines


def _runtime_formats(recipe: dict) -> list[str]:
    """The files that keep their compression in another runtime, with their checked size and accuracy."""
    lines = []
    for key, title in (("onnx_compressed", "ONNX with compressed weights"), ("openvino", "OpenVINO IR")):
        info = recipe.get(key)
        if not info:
            continue
        lines += ["", f"{title}: `{info.get('file', key)}`, {info['size_bytes']:,} bytes "
                  f"({info['size_ratio_vs_safetensors']:.2f}x model.safetensors); reloaded in its runtime: test "
                  f"accuracy {info['reloaded_accuracy']:.4f}, {info['accuracy_delta_pts']:+.2f} points against "
                  f"the point (tolerance {info['tolerance_pts']} points)."]
    if recipe.get("standalone"):
        info = recipe["standalone"]
        lines += ["", f"Without gemini_core or torch: `onnx/predict.py` with `onnx/preprocess.json` applies the "
                  f"{info['preprocess']} preprocessing to raw inputs; it needs only "
                  f"`pip install {' '.join(info['requires'])}` (see `onnx/STANDALONE.md`)."]
    return lines
