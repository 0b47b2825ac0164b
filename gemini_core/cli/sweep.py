"""``sweep``: measure a grid of compression configs, one JSON line per point."""
from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from gemini_core.cli import llm_flags
from gemini_core.cli.common import (
    SettingsFlags,
    add_scenario_args,
    baseline_from,
    note,
    print_json,
    print_point,
    scenario_from,
)
from gemini_core.config import EXECUTIONS, PRUNE_METHODS
from gemini_core.device import busy_warning
from gemini_core.errors import GeminiError
from gemini_core.measure import memory_cap_bytes
from gemini_core.results.stats import describe_delta
from gemini_core.results.store import Store
from gemini_core.workflows.executors import EXECUTORS
from gemini_core.kinds.llm.sweep import run_llm_sweep
from gemini_core.workflows.ray_executor import RayExecutor, cluster_summary, connect
from gemini_core.workflows.sweep import run_sweep
from gemini_core.workflows.sweep_spec import SweepSpec

# One comma-list flag per grid axis; SweepSpec.from_strings parses them, naming the bad item.
SPEC_FLAGS = SettingsFlags(
    SweepSpec,
    helps={
        "prune_methods": "comma list of " + ", ".join(PRUNE_METHODS),
        "prune_ratios": "comma list in [0, 0.95], e.g. 0,0.25,0.5",
        "bits": "comma list of 32,16,8,6,4,3,2",
        "granularities": "per-tensor, per-channel, group-32/64/128",
        "executions": "comma list of " + ", ".join(EXECUTIONS),
        "finetune_steps": "recovery steps after pruning (comma list)",
        "recoveries": "finetune, qat, distill (comma list): how the fine-tune steps recover; qat trains against "
                      "the quantized weights, once per bit width and granularity; distill minimises the KL "
                      "divergence to the uncompressed baseline's logits (T=2) instead of the labels' loss",
        "batch_size": "batch size for latency and memory",
    },
    flags={"prune_methods": "--prune-method", "granularities": "--granularity", "executions": "--execution",
           "recoveries": "--recovery"},
    without_flag={"allocations": "per-layer configs come from `sensitivity --allocate --measure`",
                  "recover_unpruned": "set by `sensitivity --allocate --measure` for its uniform comparison"},
    defaults={"prune_methods": "none", "prune_ratios": "0", "bits": "32", "granularities": "per-channel",
              "executions": "dense", "finetune_steps": "0", "recoveries": "finetune", "batch_size": "32"},
    text=True,
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="measure a grid of compression configs")
    add_scenario_args(p)
    SPEC_FLAGS.add_to(p)
    llm_flags.add_to(p)
    p.add_argument("--out", help="append points to this JSONL file instead of stdout")
    p.add_argument("--force", action="store_true", help="re-measure points already stored")
    p.add_argument("--name", help="a name for the run")
    p.add_argument("--executor", choices=list(EXECUTORS), default="local",
                   help="local (this process, default) or ray (one task per pruning setting on a Ray cluster; "
                        "for --scenario llm one task per point)")
    p.add_argument("--ray-address", help="with --executor ray: auto or HOST:PORT of a running cluster "
                                         "(default: start a local Ray instance sized to this machine)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.scenario == "llm":
        return _run_llm(args)
    llm_flags.refuse_for_classifiers(args)
    spec = SweepSpec.from_strings(**SPEC_FLAGS.given(args))
    memory_cap_bytes()  # a malformed GEMINI_MAX_BATCH_BYTES fails here, before any training
    out_path = Path(args.out) if args.out else None
    if out_path is not None and not out_path.parent.exists():
        raise GeminiError(f"--out folder {out_path.parent} does not exist")
    if args.ray_address and args.executor != "ray":
        raise GeminiError("--ray-address needs --executor ray")
    if args.executor == "ray":
        _connect_ray(args.ray_address)  # before the baseline: a bad address fails fast
    out = out_path.open("a", encoding="utf-8") if out_path is not None else None
    try:
        scenario = scenario_from(args)
        baseline = baseline_from(args, scenario)
        failed_points, run_id = _run_points(args, scenario, baseline, spec, out)
    finally:
        if out is not None:
            out.close()
    if out is not None:  # the records went to the file: stdout still says which run they belong to
        print_json({"run_id": run_id, "out": str(out_path), "points": spec.n_points(), "failed": failed_points})
    if failed_points:
        note(f"{failed_points} point(s) failed; their reasons are in the records")
    return 0


def _connect_ray(address) -> None:
    seconds = connect(address)
    cluster = cluster_summary(address)
    note(f"Ray ({cluster['address']}): {cluster['n_nodes']} node(s), {cluster['cpus']:g} CPUs, "
         f"{cluster['gpus']:g} GPUs; connected in {seconds:.1f} s")


def _run_points(args, scenario, baseline, spec, out) -> tuple[int, str | None]:
    """Print each point's record as it is measured; how many failed, and the run id."""
    failed_points, run_id = 0, None
    with tqdm(total=spec.n_points(), desc="sweep", unit="point", file=sys.stderr) as bar:
        for record in run_sweep(scenario, baseline, spec, store=Store(), device=args.device, force=args.force,
                                name=args.name, executor=args.executor, ray_address=args.ray_address):
            print_point({k: v for k, v in record.items() if k != "traceback"}, file=out)
            failed_points += record.get("status") == "failed"
            if record.get("status") == "ok" and not record.get("reused"):
                bar.write(point_line(record), file=sys.stderr)
            run_id = record.get("run_id") or run_id
            bar.update(1)
    return failed_points, run_id


def point_line(record: dict) -> str:
    """One stderr line per measured point: accuracy with its interval, the paired change, warnings."""
    ci, n = record.get("accuracy_ci95"), record.get("test_n")
    accuracy = f"{record['accuracy'] * 100:.2f}%"
    if ci and n:
        accuracy += f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}] n={n}"
    line = (f"{record.get('label')}: accuracy {accuracy}, vs baseline "
            f"{describe_delta(record.get('accuracy_delta'), record.get('accuracy_delta_ci95'))}, "
            f"latency p50 {record.get('latency_ms_p50', float('nan')):.3f} ms")
    busy = busy_warning(record)
    return line + (f" (warning: {busy})" if busy else "")


def _run_llm(args) -> int:
    """``--scenario llm``: the LLM grid flags, the same store, one JSON line per point as it is measured."""
    if args.ray_address and args.executor != "ray":
        raise GeminiError("--ray-address needs --executor ray")
    executor = None
    if args.executor == "ray":
        _connect_ray(args.ray_address)  # before the model loads: a bad address fails fast
        executor = RayExecutor(args.ray_address)
    classifier = {k: v for k, v in SPEC_FLAGS.given(args).items() if str(v) != str(SPEC_FLAGS.defaults.get(k))}
    if classifier:
        flags = ", ".join(SPEC_FLAGS.flag(k) for k in classifier)
        raise GeminiError(f"{flags}: classifier grid flags; for --scenario llm use --quant, --quant-bits, "
                          "--group-size, --llm-prune, --sparsity, --mlp-ratio, --head-ratio, --llm-recovery")
    spec = llm_flags.spec_from(args)
    out_path = Path(args.out) if args.out else None
    if out_path is not None and not out_path.parent.exists():
        raise GeminiError(f"--out folder {out_path.parent} does not exist")
    scenario = scenario_from(args)
    if scenario.builtin_model and any(p.bits == 4 and p.group_size == 32 for p in spec.points()):
        note("warning: SmolLM2's source weights were already 4-bit Q4_1 groups of 32; 4-bit g32 points reproduce "
             "that grid and measure nothing")
    note(f"llm sweep: {spec.n_points()} points, about {spec.estimate_seconds() / 60:.0f} min for SmolLM2 on 2 "
         "cores (estimate)")
    failed, run_id = 0, None
    out = out_path.open("a", encoding="utf-8") if out_path is not None else None
    try:
        with tqdm(total=spec.n_points(), desc="llm sweep", unit="point", file=sys.stderr) as bar:
            for record in run_llm_sweep(scenario, spec, store=Store(), force=args.force, name=args.name,
                                        progress=lambda text: bar.write(text, file=sys.stderr), executor=executor):
                print_point(record, file=out)
                failed += record.get("status") == "failed"
                if record.get("status") == "ok" and not record.get("reused"):
                    bar.write(llm_flags.point_line(record), file=sys.stderr)
                elif record.get("status") == "failed":
                    bar.write(f"{record.get('label')}: failed: {record.get('error')}", file=sys.stderr)
                run_id = record.get("run_id") or run_id
                bar.update(1)
    finally:
        if out is not None:
            out.close()
    if out is not None:
        print_json({"run_id": run_id, "out": str(out_path), "points": spec.n_points(), "failed": failed})
    if failed:
        note(f"{failed} point(s) failed; their reasons are in the records")
    return 0
