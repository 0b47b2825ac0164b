"""4. Sparse vs dense: the engine's CSR ``SparseLinear`` against ``nn.Linear`` at MiniLM's Linear shapes.

For each shape (in -> out) and token count (batch x sequence), the weight is magnitude-pruned to each
unstructured sparsity; the same zeroed weight runs dense (``nn.Linear``) and sparse (``SparseLinear``,
the kernel ``execution="sparse"`` installs), timed in interleaved rounds. The crossover is the lowest
sparsity from which sparse is faster at every higher sparsity measured.

Then two whole-model checks: MiniLM magnitude-pruned and run with dense vs sparse execution, and whether
the product ever *suggests* a sparse point that is slower than its dense twin (the dashboard's
``suggest_point`` on a digits sweep with both executions). The sweep's own timings are sequential
single measurements, so a suggested sparse point is rebuilt with its dense twin and re-timed in
interleaved rounds before the verdict.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from .common import (
    Call,
    Context,
    digits,
    environment,
    finish_environment,
    fmt_x,
    interleaved_latency,
    log,
    target,
    text_model,
)

TITLE = "Sparse vs dense execution"
SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
SHAPES = ((384, 384), (384, 1536), (1536, 384))  # MiniLM: q/k/v/attn-out, FFN up, FFN down
TARGET_95 = 1.5


def magnitude_prune_(linear: nn.Linear, sparsity: float) -> None:
    """Zero exactly round(sparsity * n) of the smallest-magnitude weights."""
    with torch.no_grad():
        w = linear.weight
        k = int(round(sparsity * w.numel()))
        if k:
            idx = w.abs().reshape(-1).argsort()[:k]
            w.view(-1)[idx] = 0.0


def _layer_rows(ctx: Context) -> list[dict]:
    from gemini_core.runtimes.torch_kernels import SparseLinear

    shapes = ctx.pick(SHAPES, SHAPES, SHAPES[:1])
    sparsities = ctx.pick(SPARSITIES, SPARSITIES, (0.5, 0.95))
    tokens = ctx.pick([("32x64", 32 * 64), ("1x64", 64)], [("32x64", 32 * 64), ("1x64", 64)], [("1x64", 64)])
    rows = []
    for in_f, out_f in shapes:
        for token_label, n_tokens in tokens:
            torch.manual_seed(0)
            x = {"x": torch.randn(n_tokens, in_f)}
            for sparsity in sparsities:
                linear = nn.Linear(in_f, out_f)
                magnitude_prune_(linear, sparsity)
                dense, sparse = Call(linear).eval(), Call(SparseLinear(linear)).eval()
                with torch.no_grad():
                    err = float((dense(x["x"]) - sparse(x["x"])).abs().max())
                timing = interleaved_latency({"dense": dense, "sparse": sparse}, x, "dense",
                                             rounds=ctx.pick(7, 3, 2), runs=ctx.pick(3, 2, 1))
                rows.append({"shape": f"{in_f}x{out_f}", "in_features": in_f, "out_features": out_f,
                             "tokens": token_label, "sparsity": sparsity, "speedup": timing["sparse"]["speedup"],
                             "dense_ms": timing["dense"]["ms"], "sparse_ms": timing["sparse"]["ms"],
                             "max_abs_diff": err})
            log(f"sparse {in_f}x{out_f} @ {token_label}: " + ", ".join(
                f"{r['sparsity']:.0%} {r['speedup']['median']:.2f}x" for r in rows[-len(sparsities):]))
    return rows


def crossovers(rows: list[dict]) -> list[dict]:
    """Per (shape, tokens): the lowest sparsity from which sparse wins at every higher sparsity."""
    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["shape"], r["tokens"]), []).append(r)
    for (shape, tokens), items in groups.items():
        items = sorted(items, key=lambda r: r["sparsity"])
        cross = None
        for i, r in enumerate(items):
            if all(x["speedup"]["median"] > 1.0 for x in items[i:]):
                cross = r["sparsity"]
                break
        out.append({"shape": shape, "tokens": tokens, "crossover_sparsity": cross,
                    "slower_at": [r["sparsity"] for r in items if r["speedup"]["median"] < 1.0]})
    return out


def _model_rows(ctx: Context) -> tuple[list[dict], dict | None]:
    """MiniLM magnitude-pruned, dense vs sparse execution (latency only)."""
    found = None if ctx.quick else text_model(ctx)
    if found is None:
        return [], None
    from gemini_core.compress import compress, prune_copy
    from gemini_core.config import CompressionConfig

    scenario, model, info, _ = found
    rows = []
    for ratio in (0.5, 0.9, 0.95):
        config = CompressionConfig(prune_method="magnitude-unstructured", prune_ratio=ratio)
        pruned = prune_copy(model, config, scenario, device=ctx.device)
        dense = compress(model, config, scenario, device=ctx.device, pruned=pruned)
        sparse_cfg = CompressionConfig(prune_method="magnitude-unstructured", prune_ratio=ratio, execution="sparse")
        sparse = compress(model, sparse_cfg, scenario, device=ctx.device, pruned=pruned)
        for batch in (1, 32):
            inputs = scenario.splits.test.first(batch).inputs
            timing = interleaved_latency({"dense": dense.model, "sparse": sparse.model}, inputs, "dense",
                                         rounds=5, runs=1, device=ctx.device)
            rows.append({"model": "MiniLM", "batch": f"{batch}x{scenario.max_length}", "sparsity": ratio,
                         "achieved_sparsity": pruned.achieved_ratio, "speedup": timing["sparse"]["speedup"],
                         "dense_ms": timing["dense"]["ms"], "sparse_ms": timing["sparse"]["ms"],
                         "sparse_backend": sparse.backend, "size_bytes": len(sparse.storage())})
            log(f"sparse MiniLM {ratio:.0%} batch {batch}: {fmt_x(timing['sparse']['speedup'])}")
        del dense, sparse, pruned
    return rows, info


def twin_timing(ctx: Context, scenario, model, config_dict: dict) -> dict:
    """A sparse-execution point against its dense twin (same pruning, same bits), interleaved, batch 32."""
    import dataclasses

    from gemini_core.compress import compress, prune_copy
    from gemini_core.config import CompressionConfig

    config = CompressionConfig.from_dict(config_dict)
    twin = dataclasses.replace(config, execution="dense")
    pruned = prune_copy(model, config, scenario, device=ctx.device)
    sparse = compress(model, config, scenario, device=ctx.device, pruned=pruned)
    dense = compress(model, twin, scenario, device=ctx.device, pruned=pruned)
    timing = interleaved_latency({"dense": dense.model, "sparse": sparse.model}, scenario.splits.test.first(32).inputs,
                                 "dense", rounds=ctx.pick(9, 5, 3), runs=ctx.pick(20, 10, 5), device=ctx.device)
    return {"label": config.label(), "twin": twin.label(), "sparse_backend": sparse.backend,
            "sparse_speedup_vs_dense": timing["sparse"]["speedup"], "dense_ms": timing["dense"]["ms"],
            "sparse_ms": timing["sparse"]["ms"]}


def verify_suggestion(ctx: Context, scenario, model, records: list[dict], chosen_label: str | None) -> dict:
    """{suggested, execution, twin (if sparse), slower (bool or None)} for a dashboard suggestion."""
    out = {"suggested": chosen_label, "suggested_execution": None, "twin": None,
           "suggested_sparse_slower_than_dense": None}
    record = next((r for r in records if r.get("label") == chosen_label), None)
    if record is None:
        return out
    out["suggested_execution"] = record["config"]["execution"]
    if out["suggested_execution"] != "sparse":
        out["suggested_sparse_slower_than_dense"] = False
        return out
    out["twin"] = twin_timing(ctx, scenario, model, record["config"])
    out["suggested_sparse_slower_than_dense"] = out["twin"]["sparse_speedup_vs_dense"]["median"] < 1.0
    return out


def suggestion_check(ctx: Context) -> dict:
    """Does the product ever suggest a sparse point slower than its dense twin? (digits, both executions)."""
    from gemini_core.config import CompressionConfig
    from gemini_core.kinds.classifier.units import SweepUnit, run_unit

    scenario, baseline = digits(ctx)
    units = [SweepUnit(CompressionConfig(), (CompressionConfig(), CompressionConfig(execution="sparse")))]
    for ratio in ctx.pick((0.5, 0.9, 0.95), (0.5, 0.95), (0.95,)):
        units.append(SweepUnit(CompressionConfig(prune_method="magnitude-unstructured", prune_ratio=ratio),
                               tuple(CompressionConfig(prune_method="magnitude-unstructured", prune_ratio=ratio,
                                                       execution=e) for e in ("dense", "sparse"))))
    records = []
    for unit in units:
        records += [r for r in run_unit(baseline.model, scenario, unit, 32, ctx.device,
                                        latency_kwargs={"min_runs": ctx.pick(20, 10, 5),
                                                        "min_seconds": ctx.pick(0.2, 0.1, 0.0)})]
    out = {"scenario": "digits", "points": [
        {"label": r["label"], "execution": r["config"]["execution"], "accuracy": r.get("accuracy"),
         "latency_ms_p50": r.get("latency_ms_p50"), "size_bytes": r.get("size_bytes"), "status": r["status"]}
        for r in records]}
    twins = {}
    for r in records:
        if r["status"] == "ok":
            c = dict(r["config"])
            c.pop("execution")
            twins.setdefault(str(sorted(c.items())), {})[r["config"]["execution"]] = r
    slower = [pair["sparse"]["label"] for pair in twins.values()
              if "dense" in pair and "sparse" in pair
              and pair["sparse"]["latency_ms_p50"] > pair["dense"]["latency_ms_p50"]]
    out["sparse_points_slower_than_dense_twin"] = slower
    from gemini_core.results.suggest import suggest_point
    from gemini_core.results.table import points_frame

    df = points_frame(records)
    chosen = suggest_point(df)
    if chosen is None:
        out["suggested"] = None
        return out
    front = df[df["pareto"] & (df["execution"] == "sparse")]
    out["sparse_points_on_front"] = [str(x) for x in front["label"]]
    out.update(verify_suggestion(ctx, scenario, baseline.model, records, str(chosen["label"])))
    return out


def run(quick: bool = False, ctx: Context | None = None) -> dict:
    from .common import make_context

    ctx = ctx or make_context(quick=quick)
    started = time.perf_counter()
    env = environment(ctx)
    result = {"section": "sparse", "title": TITLE, "mode": ctx.mode, "env": env, "notes": []}
    rows = _layer_rows(ctx)
    result["rows"] = rows
    result["crossovers"] = crossovers(rows)
    model_rows, info = _model_rows(ctx)
    if ctx.quick:
        result["notes"].append("quick profile: whole-model MiniLM rows skipped (full runs only)")
    result["model_rows"] = model_rows
    result["text_model"] = info
    check = suggestion_check(ctx)
    result["suggestion_check"] = check
    from gemini_core.config import EXECUTIONS, CompressionConfig

    auto = "auto" in EXECUTIONS
    result["engine_policy"] = {
        "executions": list(EXECUTIONS), "default_execution": CompressionConfig().execution, "auto_mode": auto,
        "policy": "execution='sparse' replaces every prunable Linear by SparseLinear whether or not it is faster; "
                  "nothing chooses sparse on its own (no 'auto' execution)."}
    result["notes"] += [
        "Layer rows: one nn.Linear of MiniLM's shape, weights magnitude-pruned to the sparsity; dense = nn.Linear "
        "(MKL/oneDNN GEMM), sparse = gemini_core.runtimes.torch_kernels.SparseLinear (CSR torch.sparse.mm). speed-up = dense / "
        "sparse latency per interleaved round, median (min–max).",
        "Crossover: lowest sparsity measured from which sparse is faster at every higher sparsity measured.",
        "Whole-model rows: MiniLM's encoder Linear layers magnitude-pruned (no fine-tuning: latency only); "
        "embeddings, attention products and norms stay dense, which caps the model-level gain.",
    ]
    targets = []
    # Target: never chosen where slower.
    suggested_bad = check.get("suggested_sparse_slower_than_dense")
    slower_cases = [f"{c['shape']}@{c['tokens']}: {', '.join(f'{s:.0%}' for s in c['slower_at'])}"
                    for c in result["crossovers"] if c["slower_at"]]
    if auto:
        policy_met, policy_txt = None, "engine has an 'auto' execution: not evaluated by this bench version"
    else:
        policy_met = not suggested_bad if suggested_bad is not None else None
        twin = check.get("twin")
        policy_txt = ("no auto-choice in the engine (execution is the user's, default 'dense'); "
                      f"dashboard suggestion on digits: {check.get('suggested') or 'unavailable'}"
                      + (f", re-timed against its dense twin: {fmt_x(twin['sparse_speedup_vs_dense'])}" if twin else ""))
    why = ("evaluated as: does the product ever choose or suggest sparse where it is slower. Asked for explicitly "
           "(execution='sparse'), it runs sparse on every layer, also where slower: "
           + ("; ".join(slower_cases) if slower_cases else "no slower layer case measured"))
    targets.append(target("Sparse never chosen where slower", "sparse backend never chosen where slower than dense",
                          policy_txt, policy_met, why))
    big = [r for r in rows if r["sparsity"] == 0.95 and r["tokens"] == "32x64"]
    goal = f"sparse >= {TARGET_95}x dense at 95% sparsity (MiniLM Linear shapes, 32x64 tokens)"
    if big and len(big) == len(SHAPES):
        worst = min(big, key=lambda r: r["speedup"]["median"])
        met = worst["speedup"]["median"] >= TARGET_95
        measured = "; ".join(f"{r['shape']} {r['speedup']['median']:.2f}x" for r in big)
        short = [r["shape"] for r in big if r["speedup"]["median"] < TARGET_95]
        small = [r for r in rows if r["sparsity"] == 0.95 and r["tokens"] == "1x64"]
        why = ""
        if not met:
            why = (f"below {TARGET_95}x at {', '.join(short)}: at 5% density, CSR torch.sparse.mm on a 2,048-token "
                   "operand is not 1.5x faster than the dense GEMM (and the figure moves between runs on a busy "
                   "machine: see the spread)")
            if small:
                why += (f"; with 64 tokens (batch 1) sparse at 95% reached "
                        f"{min(r['speedup']['median'] for r in small):.2f}x or more")
        targets.append(target("Sparse at 95%", goal, f"worst {worst['speedup']['median']:.2f}x ({measured})", met,
                              why, value=worst["speedup"]["median"]))
    else:
        targets.append(target("Sparse at 95%", goal, "not all shapes measured in this run", None, "tiny profile"))
    result["targets"] = targets
    result["tables"] = [
        {"title": "SparseLinear vs nn.Linear (per layer)",
         "columns": [("shape", "in x out", "s"), ("tokens", "tokens", "s"), ("sparsity", "sparsity", ".0%"),
                     ("speedup", "sparse speed-up", "x"), ("dense_ms", "dense ms", "ms"),
                     ("sparse_ms", "sparse ms", "ms")],
         "rows": rows},
        {"title": "Crossover (lowest sparsity from which sparse is faster)",
         "columns": [("shape", "in x out", "s"), ("tokens", "tokens", "s"), ("crossover_sparsity", "crossover", ".0%"),
                     ("slower_at", "sparse slower at", "list%")],
         "rows": result["crossovers"]},
        {"title": "Whole MiniLM, magnitude-pruned: sparse vs dense execution",
         "columns": [("model", "model", "s"), ("batch", "batch", "s"), ("sparsity", "sparsity", ".0%"),
                     ("speedup", "sparse speed-up", "x"), ("dense_ms", "dense ms", "ms"),
                     ("sparse_ms", "sparse ms", "ms")],
         "rows": model_rows},
    ]
    result["env"] = finish_environment(env, started)
    return result
