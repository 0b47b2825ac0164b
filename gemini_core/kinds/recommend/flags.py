"""The recommender grid flags of the one ``sweep`` command (and the one line printed per recommender point), and
the ``sensitivity`` command's reading of its flags for a recommender. The command adds every kind's flags; the
kind a scenario builds reads its own and refuses the others'.

The baseline's training settings come from the shared training flags (``--epochs``, ``--lr``,
``--train-batch-size``, ``--max-steps``, ``--train-patience``, ``--train-threads``) and the model from
``--rec-model`` / ``--rec-dim`` / ``--rec-hidden``; the data's columns from the scenario flags
(``--user-column``, ``--item-column``, ``--time-column``, ...).
"""
from __future__ import annotations

from dataclasses import replace

from gemini_core.config import parse_list
from gemini_core.errors import GeminiError
from gemini_core.kinds.recommend.measure import RecommendMeasureSettings
from gemini_core.kinds.recommend.models import MODELS
from gemini_core.kinds.recommend.peer_points import DEFAULT_GRID, PEERS
from gemini_core.kinds.recommend.points import DEFAULT_RECOVERY_STEPS, RecommendSweepSpec
from gemini_core.kinds.recommend.sensitivity import RecommendSensitivityParams
from gemini_core.kinds.recommend.tables import BITS, HOT_BITS
from gemini_core.kinds.recommend.train import RecommendTrainSettings
from gemini_core.results.metrics import get_metric

# flag -> (spec field, default, help)
GRID = {
    "--rec-bits": ("bits", "32,8,4", f"recommend: embedding bits, comma list of {', '.join(map(str, BITS))} "
                   "(row-wise: each row its own float16 scale and offset, codes packed; 32 = float)"),
    "--rec-hot-share": ("hot_shares", "", f"recommend: mixed precision: the share of rows with the most "
                        f"interactions kept at {HOT_BITS} bits, the rest at each --rec-bits below {HOT_BITS}, "
                        "e.g. 0.1,0.2"),
    "--rec-rows": ("row_prune_ratios", "", "recommend: share of the rarest users and items that share one "
                   "fallback row per table, e.g. 0.5"),
    "--rec-dims": ("dim_prune_ratios", "", "recommend: share of embedding dimensions dropped, least energy "
                   "first, in both tables"),
    "--rec-rank": ("ranks", "", "recommend: low-rank tables A (ids x rank) . B (rank x dim), e.g. 4,8"),
    "--rec-qr": ("qr_divisors", "", "recommend: quotient-remainder tables of ceil(n/m) + m rows, e.g. 4"),
    "--rec-tower": ("tower_prune_ratios", "", "recommend: share of the towers' hidden units pruned with "
                    "torch-pruning (two-tower models)"),
    "--rec-recovery-steps": ("recovery_steps", str(DEFAULT_RECOVERY_STEPS),
                             "recommend: recovery steps of every point whose structure changed (and of the "
                             "uncompressed control): ALS half-steps where an ALS model keeps a float row per id, "
                             "else BPR steps; 0: none"),
    "--rec-peers": ("peers", "", "recommend: library peers measured beside the points on the same split and "
                    f"shown next to them, never shipped: comma list of {', '.join(PEERS)} (implicit: tuned on "
                    "validation; torchrec: the trained baseline's tables in TorchRec's quantized collection)"),
    "--rec-peer-grid": ("peer_grid", str(DEFAULT_GRID), "recommend: settings of each implicit peer's validation "
                        "grid tried (fewer: a quicker sweep)"),
}
MODEL_FLAGS = {"--rec-model": ("model", str, f"recommend: the model trained first: {', '.join(MODELS)}"),
               "--rec-dim": ("dim", int, "recommend: embedding width"),
               "--rec-hidden": ("hidden", int, "recommend: the towers' hidden width (two-tower models)")}
MEASURE_FLAGS = {"--rec-repeats": ("repeats", int, "recommend: timed scoring calls per point and candidate count")}
# the shared training flags' destinations -> RecommendTrainSettings fields
TRAIN_DESTS = {"epochs": "epochs", "train_batch_size": "batch_size", "lr": "lr", "max_steps": "max_steps",
               "train_patience": "patience", "train_threads": "threads"}


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def add_to(p) -> None:
    for flag, (_field, default, text) in GRID.items():
        p.add_argument(flag, dest=_dest(flag), default=None, help=f"{text} (default {default or 'none'})")
    defaults, measure = RecommendTrainSettings(), RecommendMeasureSettings()
    for flag, (field, kind, text) in MODEL_FLAGS.items():
        p.add_argument(flag, dest=_dest(flag), type=kind, default=None,
                       help=f"{text} (default {getattr(defaults, field)})")
    for flag, (field, kind, text) in MEASURE_FLAGS.items():
        p.add_argument(flag, dest=_dest(flag), type=kind, default=None,
                       help=f"{text} (default {getattr(measure, field)})")


def given(args) -> dict:
    flags = [*GRID, *MODEL_FLAGS, *MEASURE_FLAGS]
    return {flag: getattr(args, _dest(flag)) for flag in flags if getattr(args, _dest(flag), None) is not None}


def refuse(args) -> None:
    """One line when this kind's flags are given for a scenario of another kind."""
    used = list(given(args))
    if used:
        raise GeminiError(f"{', '.join(used)}: recommender flags; use them with --scenario recommend")


def train_settings(args) -> RecommendTrainSettings:
    """The baseline's settings: the defaults, the shared training flags given, and --rec-model/-dim/-hidden."""
    changes = {field: getattr(args, dest) for dest, field in TRAIN_DESTS.items()
               if getattr(args, dest, None) is not None}
    changes.update({field: getattr(args, _dest(flag)) for flag, (field, _k, _t) in MODEL_FLAGS.items()
                    if getattr(args, _dest(flag), None) is not None})
    return replace(RecommendTrainSettings(), **changes)


def spec_from(args) -> RecommendSweepSpec:
    """The grid these flags ask for (defaults for the flags not given)."""
    values = {field: default for field, default, _text in GRID.values()}
    values.update({GRID[flag][0]: value for flag, value in given(args).items() if flag in GRID})
    measure = {field: getattr(args, _dest(flag)) for flag, (field, _k, _t) in MEASURE_FLAGS.items()
               if getattr(args, _dest(flag), None) is not None}
    return RecommendSweepSpec.from_strings(**values, train=train_settings(args),
                                           measure=RecommendMeasureSettings(**measure))


def plan_notes(scenario, spec: RecommendSweepSpec) -> list[str]:
    notes = []
    if scenario.data is None:
        notes.append("recommend: the SYNTHETIC demo log (made-up users and items); give --data with --user-column "
                     "and --item-column for yours")
    notes.append(f"recommend sweep: {spec.n_points()} points on a {spec.train.model} model (dim {spec.train.dim}), "
                 f"about {spec.estimate_seconds():.0f} s on the synthetic demo on 2 cores (estimate; a larger log "
                 "takes longer)")
    return notes


def point_line(record: dict) -> str:
    metric = get_metric("ndcg@10")
    versus = "" if record.get(f"{metric.name}_delta") is None else f", vs reference {_change(record)}"
    nan = float("nan")
    return (f"{record.get('label')}: NDCG@10 {metric.format(record.get(metric.column))} "
            f"[{metric.interval_text(record)}]{versus}, HR@10 {100 * record.get('hr_at_10', nan):.1f}%, "
            f"embedding bytes {record.get('embedding_bytes', 0):,}, file {record.get('size_bytes', 0):,} bytes, "
            f"scoring p50 of 1,000 candidates {record.get('latency_ms_p50', nan):.3f} ms, "
            f"{record.get('throughput_users_per_s', 0):.0f} users/s")


def _change(record: dict) -> str:
    delta, ci = record.get("ndcg@10_delta"), record.get("ndcg@10_delta_ci95") or [float("nan")] * 2
    return f"{100 * delta:+.2f} points [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"


def sensitivity_params(args) -> RecommendSensitivityParams:
    """The ``sensitivity`` command's flags, read for a recommender: the bit widths (each table quantized alone)
    and the baseline's training settings."""
    return RecommendSensitivityParams(bits=tuple(parse_list(args.bits, int, "bits")), train=train_settings(args))


def profile_rows(profile) -> tuple[list[dict], str]:
    """The profile as table rows (one per embedding table) and the advice line."""
    rows = [{"table": e["layer"], "values": e["params"],
             **{f"ndcg@{r['bits']}b": 100 * r["ndcg_at_10"] for r in e["results"]},
             **{f"drop@{r['bits']}b": r["drop_points"] for r in e["results"]},
             **{f"bytes@{r['bits']}b": r["embedding_bytes"] for r in e["results"]}} for e in profile.quantization]
    base = profile.baseline
    keep = profile.params.get("keep_high_precision") or []
    advice = (f"float32 NDCG@10 {100 * base['ndcg_at_10']:.2f}% on {profile.examples} validation users; "
              "drops in NDCG@10 points; keep at higher precision: "
              + (", ".join(f"{k['table']} (loses {k['ndcg_drop_points']:.2f} points at {k['bits']}-bit)" for k in keep)
                 or "none measured"))
    return rows, advice
