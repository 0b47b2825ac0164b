"""``sensitivity``: per-layer sensitivity analysis, and optionally an allocation from it (measured if asked)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tqdm import tqdm

from gemini_core.cli.common import (
    add_scenario_args,
    baseline_from,
    format_table,
    format_value,
    note,
    scenario_from,
)
from gemini_core.config import parse_list
from gemini_core.errors import GeminiError
from gemini_core.results.store import Store
from gemini_core.workflows.allocator import (
    allocate,
    check_budget,
    measure_allocation,
    measured_rows,
)
from gemini_core.kinds.llm.sensitivity import LLMSensitivityParams, analyse_llm
from gemini_core.workflows.sensitivity import AnalysisParams, run_analysis


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sensitivity", help="per-layer sensitivity analysis (and an allocation from it)")
    add_scenario_args(p)
    p.add_argument("--ratios", default="0.25,0.5,0.75", help="pruning ratios per coupled group (comma list)")
    p.add_argument("--bits", default="8,4,2", help="bit widths per layer (comma list); llm: per decoder block "
                   "(default there 4,3)")
    p.add_argument("--granularity", default="per-channel", help="per-tensor, per-channel, group-32/64/128")
    p.add_argument("--prune-method", default="l2-structured", help="structured method for the pruning profile")
    p.add_argument("--phases", default="pruning,quantization,latency", help="which profiles (comma list)")
    p.add_argument("--max-examples", type=int, default=512, help="validation examples per evaluation")
    p.add_argument("--latency-batch", type=int, default=32, help="batch size of the latency profile")
    p.add_argument("--out", help="write the analysis (and allocation, measured points) as JSON to this file")
    p.add_argument("--force", action="store_true", help="analyse again even if stored")
    p.add_argument("--allocate", help="budget for the allocator: max-drop=POINTS and/or max-loss=NATS (smallest "
                                      "size within them) or speedup=X (optionally with max-drop)")
    p.add_argument("--allocate-bits", help="bit widths the allocator may choose (default: 32 and the profiled ones)")
    p.add_argument("--no-prune", action="store_true", help="the allocator chooses bits only")
    p.add_argument("--finetune-steps", type=int, default=0,
                   help="recovery steps for the allocation and every uniform comparator (quantized-only too)")
    p.add_argument("--measure", action="store_true",
                   help="measure the allocation next to uniform points (a stored sweep)")
    p.add_argument("--compare-bits", default="32,8,4", help="uniform bit widths measured next to the allocation")
    p.add_argument("--compare-ratios", default="0", help="uniform pruning ratios measured next to the allocation")
    p.add_argument("--batch-size", default="32", help="batch size for the measured points' latency")
    p.add_argument("--name", help="a name for the measured run")
    p.add_argument("--group-size", default="64", help="llm: RTN group size per block (64, g64 or group-64, or "
                   "per-channel)")
    p.add_argument("--eval-tokens", type=int, default=1024, help="llm: held-out tokens per perplexity")
    p.set_defaults(func=run)


def _integer(text) -> int:
    return int(str(text))


def parse_allocate(text: str) -> dict:
    """``max-drop=1`` or ``speedup=3`` or ``speedup=3,max-drop=2`` -> allocate() keyword arguments."""
    out: dict = {"objective": "smallest-size", "max_accuracy_drop_points": None}
    for item in [i.strip() for i in str(text).split(",") if i.strip()]:
        key, _, value = item.partition("=")
        key = key.strip().lower()
        try:
            number = float(value)
        except ValueError:
            raise GeminiError(f"--allocate: {item!r} needs a number, e.g. max-drop=1 or speedup=3") from None
        if key in ("max-drop", "max_drop"):
            out["max_accuracy_drop_points"] = number
        elif key in ("max-loss", "max_loss"):
            out["max_loss_increase"] = number
        elif key == "speedup":
            out["objective"], out["target_speedup"] = "speedup", number
        else:
            raise GeminiError(f"--allocate: unknown budget {key!r}; use max-drop=POINTS, max-loss=NATS "
                              "and/or speedup=X")
    if out["objective"] == "smallest-size" and out["max_accuracy_drop_points"] is None \
            and out.get("max_loss_increase") is None:
        raise GeminiError("--allocate needs max-drop=POINTS or max-loss=NATS (smallest size within it) or speedup=X")
    try:  # before the analysis runs, not after it
        check_budget(out["objective"], out["max_accuracy_drop_points"], out.get("target_speedup"),
                     out.get("max_loss_increase"))
    except GeminiError as exc:
        raise GeminiError(f"--allocate: {exc}") from None
    return out


def analysis_params(args) -> AnalysisParams:
    return AnalysisParams(ratios=tuple(parse_list(args.ratios, float, "ratios")),
                          bits=tuple(parse_list(args.bits, _integer, "bits")), granularity=args.granularity,
                          prune_method=args.prune_method, max_examples=args.max_examples,
                          batch_size=args.latency_batch, phases=tuple(parse_list(args.phases, str, "phases")))


def run(args) -> int:
    if args.scenario == "llm":
        return _run_llm(args)
    params = analysis_params(args)
    allocation_args = parse_allocate(args.allocate) if args.allocate else None
    if args.measure and not args.allocate:
        raise GeminiError("--measure measures an allocation: add --allocate")
    out_path = Path(args.out) if args.out else None
    if out_path is not None and not out_path.parent.exists():
        raise GeminiError(f"--out folder {out_path.parent} does not exist")
    scenario = scenario_from(args)
    baseline = baseline_from(args, scenario)
    store = Store()
    profile = _analyse(args, scenario, baseline, params, store)
    result = {"analysis": profile.to_dict()}
    _print_profile(scenario, baseline, profile, params)
    if allocation_args is not None:
        allocation = _allocate(args, profile, allocation_args)
        result["allocation"] = allocation.to_dict()
        if args.measure:
            result["measured"] = _measure(args, scenario, baseline, store, allocation, params)
    if out_path is not None:
        out_path.write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")
        note(f"\nwritten to {out_path}")
    return 0


def _analyse(args, scenario, baseline, params, store):
    bar = None

    def progress(event):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=event["total"], desc="sensitivity", unit="eval", file=sys.stderr)
        bar.update(1)
        bar.set_postfix_str(event["item"][-40:])

    try:
        return run_analysis(scenario, baseline, params, store=store, device=args.device, force=args.force,
                            progress=progress)
    finally:
        if bar is not None:
            bar.close()


def _print_profile(scenario, baseline, profile, params) -> None:
    print(f"sensitivity of {scenario.name} (baseline {baseline.key}), {profile.examples} validation examples, "
          f"accuracy {profile.baseline['accuracy']:.4f}; drops in accuracy points; analysis {profile.analysis_id} "
          f"({profile.status}, {profile.seconds:.0f} s)")
    if profile.pruning:
        rows = [{"group (root)": e["group"], "members": len(e["members"]),
                 **{f"drop@{r['ratio']:.0%}": r["drop_points"] for r in e["results"]}} for e in profile.pruning]
        print("\npruning one coupled group at a time:\n" + format_table(rows))
    if profile.quantization or profile.latency:
        print("\nquantizing one layer at a time (" + params.granularity + "), weight outliers, latency share:\n"
              + format_table(profile.table()))
    if profile.latency:
        lat = profile.latency
        print(f"\nlatency: {lat['total_ms_p50']:.2f} ms per batch of {lat['batch_size']} (fp32), "
              f"{lat['other_ms_p50']:.2f} ms outside the listed layers; {lat['method']}")


def _allocate(args, profile, allocation_args):
    bits_options = tuple(parse_list(args.allocate_bits, _integer, "allocate bits")) if args.allocate_bits else None
    allocation = allocate(profile, bits_options=bits_options, allow_pruning=not args.no_prune,
                          finetune_steps=args.finetune_steps, **allocation_args)
    print(f"\nallocation ({allocation.objective}; PREDICTED figures, measure the point for real ones): "
          f"{allocation.config.label()}")
    print(format_table([{k: v for k, v in r.items() if k not in ("members",)} for r in allocation.rows
                        if r["kind"] == "layer" or r["prune_ratio"]]))
    pred = allocation.predicted
    print("predicted: " + ", ".join(f"{k.replace('predicted_', '')} {format_value(v)}" for k, v in pred.items()
                                    if k.startswith("predicted_")))
    for line in allocation.notes:
        print(f"note: {line}")
    return allocation


def _measure(args, scenario, baseline, store, allocation, params) -> list[dict]:
    records = measure_allocation(
        scenario, baseline, allocation, prune_method=params.prune_method, granularity=params.granularity,
        compare_ratios=tuple(parse_list(args.compare_ratios, float, "compare ratios")),
        compare_bits=tuple(parse_list(args.compare_bits, _integer, "compare bits")),
        finetune_steps=args.finetune_steps, batch_size=int(args.batch_size), store=store, device=args.device,
        name=args.name)
    print(f"\nmeasured on the test split (run {records[0]['run_id'] if records else '-'}):\n"
          + format_table(measured_rows(records)))
    return records


def _run_llm(args) -> int:
    """``--scenario llm``: quantize one decoder block at a time (RTN) and measure perplexity."""
    if args.allocate or args.measure:
        raise GeminiError("--allocate / --measure are for classifier scenarios; the LLM profile names the blocks "
                          "to keep at higher precision")
    bits = parse_list(args.bits, _integer, "bits") if args.bits != "8,4,2" else [4, 3]
    params = LLMSensitivityParams(bits=tuple(bits), group_size=args.group_size, eval_tokens=args.eval_tokens)
    scenario = scenario_from(args)
    profile = analyse_llm(scenario, params, force=args.force, progress=lambda e: note(e.message))
    rows = [{"block": e["layer"], **{f"ppl@{r['bits']}b": r["perplexity"] for r in e["results"]},
             **{f"+%@{r['bits']}b": r["drop_points"] for r in e["results"]}} for e in profile.quantization]
    note(format_table(rows))
    note(f"fp32 perplexity {profile.baseline['perplexity']:.3f} on {profile.examples} tokens "
         f"(context {profile.baseline['context_len']}); keep at higher precision: "
         + ", ".join(f"{r['block']} ({r['perplexity_increase_pct']:+.1f}% at {r['bits']}-bit)"
                     for r in profile.params.get("keep_high_precision", [])))
    if args.out:
        Path(args.out).write_text(json.dumps({"analysis": profile.to_dict()}, indent=1, default=float),
                                  encoding="utf-8")
    return 0
