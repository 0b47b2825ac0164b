"""What every benchmark section shares: the run context, environment records, statistics,
interleaved latency timing, and the scenarios / baselines the sections measure.

Timing on a shared 2-core machine is noisy, so compared variants are never timed one after the
other in blocks: every round measures each variant once (in a rotated order) and the figure
reported is the median of the per-round ratios, with its spread (min, max, quartiles).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench" / "results"
DEFAULT_DOCS = REPO / "docs" / "benchmarks.md"

# The text data the bench may read from the data folder beside the checkout (shared_data_dir); the
# product itself never reads that folder.
SST2_FILE = Path("sst2") / "train_subset_first5000.tsv"
SMS_FILE = Path("sms_spam") / "SMSSpamCollection"


# -- run context ---------------------------------------------------------------------------------
@dataclass
class Context:
    """Options of one ``python -m bench`` run plus the objects sections share (built once)."""

    quick: bool = False
    tiny: bool = False  # the smoke-test profile: digits only, smallest grids (implies quick)
    out_dir: Path = DEFAULT_OUT
    command: str = "python -m bench"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cache: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.tiny:
            self.quick = True

    @property
    def mode(self) -> str:
        return "tiny" if self.tiny else ("quick" if self.quick else "full")

    @property
    def home(self) -> Path:
        """GEMINI_HOME of the bench (baselines cached here; git-ignored)."""
        return self.out_dir / ".home"

    def pick(self, full, quick, tiny=None):
        """The value for this run's profile."""
        if self.tiny:
            return quick if tiny is None else tiny
        return quick if self.quick else full


def make_context(quick: bool = False, tiny: bool = False, out_dir: Path | str | None = None,
                 command: str | None = None) -> Context:
    ctx = Context(quick=quick, tiny=tiny, out_dir=Path(out_dir) if out_dir else DEFAULT_OUT,
                  command=command or "python -m bench")
    ctx.home.mkdir(parents=True, exist_ok=True)
    os.environ["GEMINI_HOME"] = str(ctx.home)
    return ctx


# -- environment -----------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def environment(ctx: Context, device: torch.device | str | None = None) -> dict:
    """Where and how a section's figures were measured."""
    from gemini_core.device import device_info

    info = device_info(device or ctx.device)
    return {
        "device": info["device"],
        "device_type": info["device_type"],
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "torch_pruning": _version("torch-pruning"),
        "onnxruntime": _version("onnxruntime"),
        "python": platform.python_version(),
        "host": info["host"],
        "cpu": info["cpu"],
        "cpu_flags": cpu_flags(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": ctx.command,
        "mode": ctx.mode,
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_flags() -> list[str]:
    """The vector / matrix extensions that decide which CPU kernels are fast (from /proc/cpuinfo)."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def finish_environment(env: dict, started: float) -> dict:
    env["loadavg_end"] = _loadavg()
    env["seconds"] = round(time.perf_counter() - started, 1)
    return env


# -- statistics ------------------------------------------------------------------------------------
def summary(values) -> dict:
    """Median and spread of repeated measurements (nan-free)."""
    vals = sorted(float(v) for v in values if v is not None and v == v)
    if not vals:
        return {"median": None, "min": None, "max": None, "p25": None, "p75": None, "n": 0, "spread_pct": None}
    med = statistics.median(vals)
    q = statistics.quantiles(vals, n=4, method="inclusive") if len(vals) > 1 else [vals[0]] * 3
    return {"median": med, "min": vals[0], "max": vals[-1], "p25": q[0], "p75": q[2], "n": len(vals),
            "spread_pct": (vals[-1] - vals[0]) / med * 100 if med else None}


# -- interleaved latency -------------------------------------------------------------------------------
class Call(nn.Module):
    """Wraps a module taking one positional tensor so ``measure_latency(model, {"x": X})`` can run it."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def interleaved_latency(variants: dict, inputs: dict, reference: str, rounds: int, runs: int = 1,
                        device=None, warmup: int = 1) -> dict:
    """Time every variant once per round (rotated order); ratios are taken within a round.

    ``variants``: name -> model (``model(**inputs)``). Returns name -> {"ms": summary of the round
    medians, "speedup": summary of reference_ms / variant_ms per round, "rounds": raw ms}.
    Each round's figure is the engine's ``measure_latency`` median of ``runs`` forward passes.
    """
    from gemini_core.measure import measure_latency

    device = torch.device(device or "cpu")
    names = list(variants)
    per_round: dict[str, list[float]] = {n: [] for n in names}
    for name in names:  # warm every variant up once before any round counts
        measure_latency(variants[name], inputs, device, min_runs=1, min_seconds=0.0, warmup=warmup)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            lat = measure_latency(variants[name], inputs, device, min_runs=runs, min_seconds=0.0, warmup=warmup)
            per_round[name].append(lat["latency_ms_p50"])
    out = {}
    ref = per_round[reference]
    for name in names:
        ratios = [a / b for a, b in zip(ref, per_round[name]) if b > 0]
        out[name] = {"ms": summary(per_round[name]), "speedup": summary(ratios),
                     "rounds_ms": [round(v, 4) for v in per_round[name]]}
    return out


# -- scenarios and baselines -----------------------------------------------------------------------------
def shared_data_dir() -> Path | None:
    """The data folder: GEMINI_SHARED_DATA if set, else ``shared/data`` next to the checkout; None if absent."""
    env = os.environ.get("GEMINI_SHARED_DATA")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if candidate.is_dir():
            return candidate
    return None


def text_data(ctx: Context) -> dict | None:
    """Options for ``get_scenario("text", ...)`` on SST-2 (preferred) or the SMS data; None if absent.

    Quick runs read only the first rows of the file (copied into the bench home), so the held-out
    split, and the time to evaluate it, stay small.
    """
    root = shared_data_dir()
    if root is None:
        return None
    if (root / SST2_FILE).is_file():
        source, name = root / SST2_FILE, "SST-2 (first 5,000 rows of GLUE train)"
        options = dict(header="infer", text_column="sentence", label_column="label")
    elif (root / SMS_FILE).is_file():
        source, name = root / SMS_FILE, "SMS Spam Collection"
        options = dict(header=False, text_column=1, label_column=0)
    else:
        return None
    rows = None
    path = source
    if ctx.quick:
        rows = 1200
        path = ctx.home / "data" / f"{source.stem}_first{rows}{source.suffix}"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            keep = rows + (1 if options["header"] == "infer" else 0)
            with open(source, encoding="utf-8", newline="") as src:
                lines = [line for _, line in zip(range(keep), src)]
            path.write_text("".join(lines), encoding="utf-8", newline="")
        name += f", first {rows} rows (quick)"
    return {"name": name, "file": str(source), "rows_used": rows, "options": {"data": str(path), **options}}


# Fine-tuning budget of the MiniLM baseline (full runs). ~36 s per 1,000 examples on 2 idle cores.
TEXT_BUDGET = {"max_train_examples": 800, "max_length": 64, "epochs": 1, "batch_size": 32, "lr": 3e-4,
               "weight_decay": 0.01}


def text_scenario(ctx: Context):
    """(scenario, data description) for MiniLM on the text data, built once per run; None if no data."""
    if "text_scenario" not in ctx.cache:
        data = text_data(ctx)
        if data is None:
            ctx.cache["text_scenario"] = None
        else:
            from gemini_core.scenarios import get_scenario

            scenario = get_scenario("text", max_train_examples=TEXT_BUDGET["max_train_examples"],
                                    max_length=TEXT_BUDGET["max_length"], **data["options"])
            ctx.cache["text_scenario"] = (scenario, data)
    return ctx.cache["text_scenario"]


def text_model(ctx: Context, trained: bool | None = None):
    """(scenario, model, info) for MiniLM: the fine-tuned baseline in full runs, else the pre-trained
    encoder with its new, untrained classification head (sizes and latency do not depend on training)."""
    found = text_scenario(ctx)
    if found is None:
        return None
    scenario, data = found
    trained = (not ctx.quick) if trained is None else trained
    key = ("text_model", trained)
    if key not in ctx.cache:
        from gemini_core.scenarios import TrainSettings
        from gemini_core.training.baseline import get_baseline

        info = {"data": data["name"], "data_file": data["file"], "model": "MiniLM-L6 (all-MiniLM-L6-v2) + classifier",
                "train": len(scenario.splits.train), "val": len(scenario.splits.val),
                "test": len(scenario.splits.test), "max_length": scenario.max_length}
        if trained:
            settings = TrainSettings(epochs=TEXT_BUDGET["epochs"], batch_size=TEXT_BUDGET["batch_size"],
                                     lr=TEXT_BUDGET["lr"], weight_decay=TEXT_BUDGET["weight_decay"])
            t0 = time.perf_counter()
            baseline = get_baseline(scenario, settings, device=ctx.device)
            info.update({"trained": True, "fine_tune_budget": dict(TEXT_BUDGET), "baseline_key": baseline.key,
                         "baseline_cached": baseline.cached, "baseline_seconds": round(time.perf_counter() - t0, 1),
                         "baseline_test_accuracy": baseline.test_accuracy})
            ctx.cache[key] = (scenario, baseline.model, info, baseline)
        else:
            info.update({"trained": False, "note": "untrained classification head: accuracy figures are "
                                                   "chance-level; sizes and latency are those of the real model"})
            ctx.cache[key] = (scenario, scenario.build_model(), info, None)
    return ctx.cache[key]


def digits(ctx: Context):
    """(scenario, baseline) for the built-in digits CNN (trained once, cached in the bench home)."""
    if "digits" not in ctx.cache:
        from gemini_core.scenarios import TrainSettings, get_scenario
        from gemini_core.training.baseline import get_baseline

        scenario = get_scenario("digits")
        # The tiny (smoke-test) profile trains 2 epochs instead of the default 12.
        settings = TrainSettings(**{**scenario.default_train.to_dict(), "epochs": 2}) if ctx.tiny else None
        ctx.cache["digits"] = (scenario, get_baseline(scenario, settings, device=ctx.device))
    return ctx.cache["digits"]


@contextlib.contextmanager
def gemini_home(path: Path):
    """Point GEMINI_HOME somewhere else for a while (cold-cache measurements)."""
    previous = os.environ.get("GEMINI_HOME")
    os.environ["GEMINI_HOME"] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("GEMINI_HOME", None)
        else:
            os.environ["GEMINI_HOME"] = previous


@contextlib.contextmanager
def scratch_dir(ctx: Context, prefix: str):
    # Exports may be written only in the home's exports/ folder (or outside the home): scratch lives there.
    (ctx.home / "exports").mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=ctx.home / "exports"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fmt_x(s: dict | None, digits: int = 2) -> str:
    """'1.93x (1.80-2.05)' from a summary."""
    if not s or s.get("median") is None:
        return "–"
    return f"{s['median']:.{digits}f}x ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def target(name: str, goal: str, measured: str, met: bool | None, why: str = "", value=None) -> dict:
    """One row of the targets table. ``met``: True, False, or None (not evaluated in this run)."""
    return {"target": name, "goal": goal, "measured": measured, "value": value,
            "status": "met" if met else ("not met" if met is False else "not evaluated"), "why": why}
