"""The recommender's parts of the dashboard: the Model page's section (the SYNTHETIC demo or the user's
interaction file and its columns; no separate training step: the baseline is trained, or loaded from its
cache, when a sweep or an analysis starts), its grid form and demo on the Sweep page, its recipe form mapping,
its sensitivity form and profile, its point figures and reload check on the Export page."""
from __future__ import annotations

import streamlit as st

from gemini_core.errors import ConfigError, GeminiError
from gemini_core.kinds.recommend.measure import RecommendMeasureSettings
from gemini_core.kinds.recommend.models import MODELS
from gemini_core.kinds.recommend.peer_points import DEFAULT_GRID, PEERS, require
from gemini_core.kinds.recommend.points import DEFAULT_RECOVERY_STEPS, RecommendSweepSpec
from gemini_core.kinds.recommend.sensitivity import RecommendSensitivityParams
from gemini_core.kinds.recommend.tables import BITS, HOT_BITS
from gemini_core.kinds.recommend.train import RecommendTrainSettings
from gemini_core.results.pareto import finite
from ui.state import check_typed_path

RAY_TASK = "one task per structure (its quantized variants stream back as measured)"
PROFILE_FIGURES = ("quantization",)  # one embedding table quantized at a time: no pruning groups, no layer timing
SENSITIVITY_INTRO = ("Which embedding table to keep at higher precision: the user table and the item table are "
                     "each quantized alone, row-wise, and NDCG@10 is measured on the validation users (the test "
                     "users stay held out).")

HOT_SHARES = (0.05, 0.1, 0.2, 0.3)
ROW_RATIOS = (0.25, 0.5, 0.75, 0.9)
DIM_RATIOS = (0.25, 0.5, 0.75)
RANKS = (2, 4, 8, 16)
QR_DIVISORS = (2, 4, 8, 16)
TOWER_RATIOS = (0.25, 0.5, 0.75)
# the grid form's multiselects -> RecommendSweepSpec fields, and what each offers (a recipe or a stored run may
# only fill in these)
FORM = {"rec_bits": "bits", "rec_hot": "hot_shares", "rec_rows": "row_prune_ratios", "rec_dims": "dim_prune_ratios",
        "rec_rank": "ranks", "rec_qr": "qr_divisors", "rec_tower": "tower_prune_ratios", "rec_peers": "peers"}
FORM_OPTIONS = {"rec_bits": BITS, "rec_hot": HOT_SHARES, "rec_rows": ROW_RATIOS, "rec_dims": DIM_RATIOS,
                "rec_rank": RANKS, "rec_qr": QR_DIVISORS, "rec_tower": TOWER_RATIOS, "rec_peers": tuple(PEERS)}
# the model the sweep trains first: form key -> RecommendTrainSettings field
TRAIN_FORM = {"rec_model": "model", "rec_dim": "dim", "rec_hidden": "hidden", "rec_epochs": "epochs"}
_TRAIN = RecommendTrainSettings()
DEFAULTS = {"rec_bits": [32, 8, 4], "rec_hot": [], "rec_rows": [0.5], "rec_dims": [], "rec_rank": [], "rec_qr": [],
            "rec_tower": [], "rec_steps": DEFAULT_RECOVERY_STEPS,
            # library peers off by default: they need the optional recommend extra (implicit, TorchRec with
            # FBGEMM), which a plain install lacks, and add their fits to every sweep; one click adds them
            "rec_peers": [],
            **{k: getattr(_TRAIN, f) for k, f in TRAIN_FORM.items()}}
# The demo grid on the SYNTHETIC demo log: matrix factorization, float / int8 / int4 rows, hot 20% at 8 bits,
# half the rarest rows folded into a fallback row, quotient-remainder tables; 13 points, ~30 s on 2 busy cores.
DEMO_GRID = {"rec_bits": [32, 8, 4], "rec_hot": [0.2], "rec_rows": [0.5], "rec_dims": [], "rec_rank": [],
             "rec_qr": [4], "rec_tower": [], "rec_steps": 30, "rec_model": "mf", "rec_dim": 32, "rec_peers": [],
             "rec_hidden": _TRAIN.hidden, "rec_epochs": _TRAIN.epochs}


def _spec(values: dict) -> RecommendSweepSpec:
    train = RecommendTrainSettings(model=values["rec_model"], dim=int(values["rec_dim"]),
                                   hidden=int(values["rec_hidden"]), epochs=int(values["rec_epochs"]))
    return RecommendSweepSpec(**{field: tuple(values.get(key) or ()) for key, field in FORM.items()},
                              recovery_steps=int(values["rec_steps"]), train=train)


# -- the Sweep page ------------------------------------------------------------------------------------
def demo_spec() -> RecommendSweepSpec:
    return _spec(DEMO_GRID)


def demo_help() -> str:
    return (f"the recommender demo grid ({demo_spec().n_points()} points on matrix factorization: float, int8, int4 "
            "and hot-row rows, rare rows pruned, quotient-remainder tables); trains the model first if not cached")


def demo_caption(model: dict) -> str:
    spec = demo_spec()
    return (f"Recommender demo grid: {spec.n_points()} points on {model['scenario']}: float32, int8 and int4 rows "
            f"(each row its own scale and offset), the 20% most active rows at {HOT_BITS} bits with the rest at 4, "
            f"half of the rarest users and items sharing a fallback row, quotient-remainder tables (m = 4), every "
            f"structural change recovered with {DEMO_GRID['rec_steps']} steps (BPR: these layouts share or "
            f"factor rows, which ALS cannot solve for). About "
            f"{spec.estimate_seconds():.0f} s on the SYNTHETIC demo on 2 busy cores (estimate).")


def plan_text(spec: RecommendSweepSpec, model: dict) -> str:
    peers = f" and {len(spec.peers)} library peer{'s' if len(spec.peers) > 1 else ''}" if spec.peers else ""
    return (f"**{spec.n_points()} points** ({len(spec.structures())} structures, each built and recovered once; the "
            f"float32 reference is always included{peers}) on a {spec.train.model} model of width {spec.train.dim} · "
            "about "
            f"**{spec.estimate_seconds():.0f} s** on the synthetic demo on 2 busy cores (estimate; the model is "
            "trained first unless cached, and a larger log takes longer)")


def use_demo_grid() -> None:
    st.session_state.update({k: (list(v) if isinstance(v, list) else v) for k, v in DEMO_GRID.items()})


def sweep_form() -> tuple[RecommendSweepSpec | None, str | None]:
    """The recommender grid form; (spec, None) or (None, the problem)."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, list(value) if isinstance(value, list) else value)
    st.caption("Each point compresses the embedding tables (one row per user or item) and, for two-tower models, "
               "the towers; every structural change is recovered with the same number of steps (ALS half-steps "
               "where an ALS model keeps a float row per id, BPR steps otherwise), and the "
               "uncompressed model fine-tuned on that budget is measured too (the control).")
    c = st.columns(4)
    c[0].selectbox("Model", MODELS, key="rec_model", help="trained first (or loaded from its cache): mf = matrix "
                   "factorization; two-tower = an MLP per side; text-two-tower reads item texts")
    c[1].number_input("Embedding width", min_value=2, max_value=1024, step=8, key="rec_dim")
    c[2].number_input("Tower hidden width", min_value=2, max_value=4096, step=16, key="rec_hidden",
                      disabled=st.session_state.rec_model == "mf")
    c[3].number_input("Training epochs (at most)", min_value=1, max_value=1000, key="rec_epochs")
    c = st.columns(4)
    c[0].multiselect("Row bits", BITS, key="rec_bits", help="32 = float; 8, 4, 2: row-wise codes, each row its own "
                     "scale and offset, packed")
    c[1].multiselect(f"Hot rows at {HOT_BITS} bits (share)", HOT_SHARES, key="rec_hot",
                     help="mixed precision: the rows with the most interactions keep 8 bits, the rest get each chosen "
                          "bit width below 8")
    c[2].multiselect("Rare rows pruned (share)", ROW_RATIOS, key="rec_rows",
                     help="the users and items with the fewest interactions share one fallback row per table")
    c[3].multiselect("Dimensions pruned (share)", DIM_RATIOS, key="rec_dims",
                     help="the least-energy embedding dimensions dropped in both tables")
    c = st.columns(4)
    c[0].multiselect("Low rank", RANKS, key="rec_rank", help="each table factored as A (ids x rank) . B (rank x dim)")
    c[1].multiselect("Quotient-remainder divisor", QR_DIVISORS, key="rec_qr",
                     help="id i is Q[i // m] * R[i % m]: ceil(n/m) + m rows stand for n ids")
    c[2].multiselect("Tower units pruned (share)", TOWER_RATIOS, key="rec_tower",
                     disabled=st.session_state.rec_model == "mf", help="two-tower models: torch-pruning, L2 importance")
    c[3].number_input("Recovery steps (every structural point)", min_value=0, max_value=5000, step=10,
                      key="rec_steps")
    st.multiselect("Library peers (measured beside the points on the same split; shown on the Report, never "
                   "shipped)", list(PEERS), key="rec_peers", format_func=lambda name: PEERS[name][1],
                   help="implicit ALS / BPR: a CPU library's models, tuned on validation; TorchRec int8 / int4: "
                        "the trained model's tables in TorchRec's own quantized collection (FBGEMM). Needs the "
                        "optional recommend extra (requirements-recommend.txt)")
    values = {k: st.session_state.get(k) for k in DEFAULTS}
    if values["rec_model"] == "mf":
        values["rec_tower"] = []
    try:
        require(values["rec_peers"] or ())  # a missing library is said here, with its install line
        return _spec(values), None
    except GeminiError as exc:
        return None, str(exc)


# -- recipes (the Sweep form <-> a file, and a stored run's settings back into the form) ---------------------
def spec_from_form(state) -> dict:
    values = {k: state.get(k, v) for k, v in DEFAULTS.items()}
    spec = {field: list(values[key] or []) for key, field in FORM.items()}
    if not spec["peers"]:  # a recipe without peers stays as it was written before peers
        del spec["peers"]
    spec["recovery_steps"] = int(values["rec_steps"])
    spec["train"] = {field: values[key] for key, field in TRAIN_FORM.items()}
    return {"kind": "recommend", **spec}


def form_values(spec: dict) -> dict:
    """A stored spec -> the form's session values, validated by RecommendSweepSpec. Training and measurement
    settings the form does not show must be the defaults (run other ones with the CLI)."""
    try:
        checked = RecommendSweepSpec.from_dict(spec)
    except GeminiError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the recipe's settings are not valid: {exc}") from None
    shown = set(TRAIN_FORM.values())
    hidden = {k: v for k, v in checked.train.to_dict().items() if k not in shown and v != getattr(_TRAIN, k)}
    if hidden:
        raise ConfigError(f"training setting(s) {', '.join(sorted(hidden))} are not in the dashboard's form; run "
                          "this grid with the CLI")
    if checked.peer_grid != DEFAULT_GRID:
        raise ConfigError(f"this grid tries {checked.peer_grid} settings per implicit peer; the dashboard's form "
                          f"tries {DEFAULT_GRID}: run it with the CLI (--rec-peer-grid)")
    if checked.measure != RecommendMeasureSettings():
        raise ConfigError("this grid's measurement settings are not the dashboard's; run it with the CLI")
    values = {key: list(getattr(checked, field)) for key, field in FORM.items()}
    for key, chosen in values.items():
        missing = [v for v in chosen if v not in FORM_OPTIONS[key]]
        if missing:
            raise ConfigError(f"{FORM[key].replace('_', ' ')} {missing[0]!r} is not offered by the dashboard's form "
                              f"(offered: {', '.join(map(str, FORM_OPTIONS[key]))}); run it with the CLI")
    values["rec_steps"] = int(checked.recovery_steps)
    values.update({key: getattr(checked.train, field) for key, field in TRAIN_FORM.items()})
    return values


def after_load(values: dict) -> None:
    """Nothing to add: every value the form offers is in its lists."""


# -- the Model page -----------------------------------------------------------------------------------------
def model_section(options: dict) -> str | None:
    """The interactions (the SYNTHETIC demo or the user's file and its columns); fills ``options``; returns a
    problem or None."""
    source = st.radio("Interactions", ["SYNTHETIC demo (made-up users and items in clusters)",
                                       "my interaction file (CSV / TSV)"], key="m_rec_source", horizontal=True)
    st.caption("No separate training step: the recommender (model and width chosen on the Sweep page) is trained "
               "when a sweep or an analysis starts, or loaded from its cache for the same data and settings. "
               "Quality is NDCG@10 of each user's latest interaction ranked among 99 items the user never had.")
    if source.startswith("SYNTHETIC"):
        return None
    path = (st.text_input("Interaction file: one row per (user, item), optionally a rating and a time",
                          key="m_rec_data") or "").strip()
    if not path:
        return "give the interaction file"
    try:
        check_typed_path(path, "interaction file")
    except GeminiError as exc:
        st.error(f"This path cannot be used: {exc}")
        return str(exc)
    c = st.columns(5)
    user = (c[0].text_input("User column", key="m_rec_user") or "").strip()
    item = (c[1].text_input("Item column", key="m_rec_item") or "").strip()
    rating = (c[2].text_input("Rating column (optional)", key="m_rec_rating") or "").strip()
    when = (c[3].text_input("Time column (optional)", key="m_rec_time") or "").strip()
    threshold = (c[4].text_input("Positive from rating (optional)", key="m_rec_threshold") or "").strip()
    if not user or not item:
        return "name the user and the item columns"
    options.update(data=path, user_column=user, item_column=item)
    for key, value in (("label_column", rating), ("time_column", when), ("threshold", threshold)):
        if value:
            options[key] = value
    return None


# -- the Export page -------------------------------------------------------------------------------------
def point_metrics(point: dict, row) -> None:
    """NDCG@10 (with its change against the float reference), scoring time, embedding and file bytes."""
    c = st.columns(5)
    change = row.get("ndcg_at_10_delta_pts")
    c[0].metric("NDCG@10", f"{100 * point['ndcg_at_10']:.2f}%",
                f"{change:+.2f} pts vs float32" if finite(change) else None)
    c[1].metric("HR@10", f"{100 * point['hr_at_10']:.1f}%")
    c[2].metric("Scoring 1,000 candidates (p50)", f"{point['latency_ms_p50']:.3f} ms",
                f"100: {point.get('score_100_ms_p50', float('nan')):.3f} ms", delta_color="off")
    smaller = row.get("compression")
    c[3].metric("Embedding bytes", f"{point['embedding_bytes']:,}")
    c[4].metric("File (bytes written)", f"{point['size_bytes']:,}",
                (f"{smaller:.2f}x smaller" if smaller >= 1 else f"{1 / smaller:.2f}x larger") if finite(smaller)
                else None, delta_color="off")
    ci = point.get("ndcg_at_10_ci95") or [float("nan")] * 2
    st.caption(f"NDCG@10 95% interval {100 * ci[0]:.1f}-{100 * ci[1]:.1f}% over {point.get('users_n')} users, each "
               f"held-out item ranked among {point.get('negatives_per_user')} sampled items · "
               f"{point.get('throughput_users_per_s', 0):,.0f} users/s scoring 1,000 candidates each · "
               f"{point.get('threads')} threads · {point.get('size_written', '')}")


def export_options(formats: list) -> dict:
    """A recommender export is always model.safetensors + the standalone score.py (the formats are the
    classifier's)."""
    return {}


def check_message(check: dict) -> tuple[bool, str]:
    """(reproduced, one line) for an evaluated recommender export."""
    ok = bool(check.get("ndcg_matches_record") and check.get("scorer_matches"))
    same = "reproduced exactly" if check.get("ndcg_matches_record") else "NOT reproduced"
    return ok, (f"Reload check: NDCG@10 {same}"
                f" ({100 * check['ndcg_at_10']:.2f}% after reloading vs "
                f"{100 * (check.get('recorded_ndcg_at_10') or float('nan')):.2f}% recorded); the standalone score.py "
                f"{'gives the same scores' if check.get('scorer_matches') else 'DIFFERS'} (largest relative "
                f"difference {check.get('scorer_max_relative_diff', float('nan')):.1e}); model.safetensors "
                f"{check.get('size_bytes', 0):,} bytes"
                + (" (as recorded)" if check.get("size_matches_record") else " (NOT the recorded size)"))


def export_result(check: dict, point: dict) -> None:
    ok, line = check_message(check)
    (st.success if ok else st.warning)(line)
    if not check.get("data_fingerprint_matches"):
        st.warning("The data here differs from the data the export was measured on.")


def check_result(check: dict, title: str) -> None:
    ok, line = check_message(check)
    (st.success if ok else st.warning)(f"{title}: checksums match. {line}")


# -- the Sensitivity page ----------------------------------------------------------------------------------
def sensitivity_form():
    """(RecommendSensitivityParams, None) or (None, the problem); the analysed model defaults to the Sweep
    form's."""
    s = st.session_state
    s.setdefault("sn_rec_bits", [8, 4, 2])
    for key, field in (("sn_rec_model", "rec_model"), ("sn_rec_dim", "rec_dim"), ("sn_rec_hidden", "rec_hidden"),
                       ("sn_rec_epochs", "rec_epochs")):
        s.setdefault(key, s.get(field, DEFAULTS[field]))
    c = st.columns(4)
    c[0].multiselect("Bit widths (each table alone, row-wise)", [8, 4, 2], key="sn_rec_bits")
    c[1].selectbox("Model", MODELS, key="sn_rec_model")
    c[2].number_input("Embedding width", min_value=2, max_value=1024, step=8, key="sn_rec_dim")
    c[3].number_input("Training epochs (at most)", min_value=1, max_value=1000, key="sn_rec_epochs")
    try:
        train = RecommendTrainSettings(model=s.sn_rec_model, dim=int(s.sn_rec_dim), hidden=int(s.sn_rec_hidden),
                                       epochs=int(s.sn_rec_epochs))
        return RecommendSensitivityParams(bits=tuple(s.sn_rec_bits), train=train), None
    except GeminiError as exc:
        return None, str(exc)


def profile_caption(profile: dict) -> None:
    base = profile.get("baseline") or {}
    keep = profile.get("params", {}).get("keep_high_precision") or []
    st.caption(f"Analysis `{profile['analysis_id']}` of `{profile['baseline_key']}` · float32 NDCG@10 "
               f"{100 * base.get('ndcg_at_10', float('nan')):.2f}% on {profile['examples']} validation users · "
               f"{profile['done_steps']} of {profile['total_steps']} evaluations · {profile['status']} · "
               f"{profile['seconds']:.0f} s. Each table is quantized alone (row-wise); colour = NDCG@10 lost, in "
               "points.")
    if keep:
        st.success("Keep at higher precision: " + ", ".join(
            f"{k['table']} ({-k['ndcg_drop_points']:+.2f} NDCG@10 points at {k['bits']}-bit)" for k in keep))
