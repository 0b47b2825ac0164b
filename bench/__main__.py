"""``python -m bench``: run the benchmark sections, write their JSON and docs/benchmarks.md."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

from .common import DEFAULT_DOCS, DEFAULT_OUT, environment, finish_environment, log, make_context
from .report import SECTIONS, write_docs


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="reduced grids and repeats (within about 3 minutes)")
    p.add_argument("--tiny", action="store_true", help="smoke-test profile: digits only, smallest grids")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma list of sections to run (default: all): {', '.join(SECTIONS)}")
    p.add_argument("--out-dir", type=Path, default=None,
                   help=f"where <section>.json go (default {DEFAULT_OUT.relative_to(DEFAULT_OUT.parents[1])})")
    p.add_argument("--docs", type=Path, default=None,
                   help="the Markdown page to regenerate (default docs/benchmarks.md; with --out-dir, "
                        "OUT_DIR/benchmarks.md)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice, one per core). On a machine that other jobs "
                        "keep busy, 1 thread avoids OpenMP threads waiting on each other; the figure records it")
    p.add_argument("--render", action="store_true", help="only rebuild the Markdown page from the JSON results")
    return p.parse_args(argv)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _keep_existing_gpu(path: Path) -> bool:
    """A CPU run must not overwrite GPU rows measured earlier on a CUDA machine."""
    if not path.is_file():
        return False
    try:
        return not json.loads(path.read_text()).get("skipped", True)
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    out_dir = (args.out_dir or DEFAULT_OUT).resolve()
    docs = (args.docs or (out_dir / "benchmarks.md" if args.out_dir else DEFAULT_DOCS)).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.render:
        log(f"wrote {write_docs(out_dir, docs)}")
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"unknown section(s): {', '.join(unknown)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    ctx = make_context(quick=args.quick, tiny=args.tiny, out_dir=out_dir,
                       command="python -m bench" + (" " + " ".join(argv) if argv else ""))
    started = time.perf_counter()
    run_env = environment(ctx)
    failed = []
    for name in names:
        log(f"section {name} ({ctx.mode}) starting; load average {os.getloadavg()[0]:.2f}")
        t0 = time.perf_counter()
        try:
            result = importlib.import_module(f"bench.{name}").run(quick=ctx.quick, ctx=ctx)
        except Exception:
            failed.append(name)
            result = {"section": name, "mode": ctx.mode, "error": traceback.format_exc(),
                      "env": finish_environment(environment(ctx), t0)}
            log(f"section {name} FAILED:\n{result['error']}")
        path = out_dir / f"{name}.json"
        if name == "gpu" and result.get("skipped") and _keep_existing_gpu(path):
            log("no CUDA here: kept the GPU rows measured earlier on a CUDA machine")
        else:
            _write_json(path, result)
        log(f"section {name} done in {time.perf_counter() - t0:.1f} s")
    run_info = finish_environment(run_env, started)
    run_info["sections"] = names
    run_info["failed"] = failed
    _write_json(out_dir / "_run.json", run_info)
    if set(names) >= set(SECTIONS) - {"gpu"}:  # a complete run: its total time is the suite's figure
        _write_json(out_dir / "_full_run.json", run_info)
    log(f"all sections done in {run_info['seconds']} s; wrote {write_docs(out_dir, docs)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
