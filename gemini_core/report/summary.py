"""The stakeholder summary: baseline vs chosen point in one sentence, and a self-contained HTML report.

Everything here is computed from measured values only (the run's reference point and the chosen
point); estimates (MACs, ideal size) are labelled wherever they appear. The quality figure, its unit,
its direction, its interval and the paired comparison come from the run's quality metric
(``results.metrics``); what the latency column times and the kind's own figures (its ``extra_columns``)
come from the kind (``kinds.registry``). No Streamlit in here.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import re
from typing import Mapping

import pandas as pd
import plotly.graph_objects as go

from gemini_core.charts.images import figure_png, png_unavailable_reason
from gemini_core.device import condition_warnings
from gemini_core.kinds.registry import KindInfo
from gemini_core.report.peers import peer_section_html
from gemini_core.results.metrics import QualityMetric, finite, get_metric, kind_of_rows
from gemini_core.results.stats import NO_CHANGE
from gemini_core.results.table import control_row
from gemini_core.results.units import size_text


def _num(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return v


def _times(x: float) -> str:
    return f"{x:.0f}x" if x >= 10 else f"{x:.1f}x"


def _ratio_text(ratio: float, better: str, worse: str, unknown: str) -> str:
    """'2.1x smaller' for a ratio >= 1, '1.3x larger' below 1 (a worse point says so)."""
    if not math.isfinite(ratio):
        return unknown
    return f"{_times(ratio)} {better}" if ratio >= 1.0 else f"{_times(1 / ratio)} {worse}"


def _kind_metric(*rows: Mapping) -> tuple[KindInfo, QualityMetric]:
    kind = kind_of_rows([dict(r) for r in rows])
    return kind, get_metric(kind.quality_metric)


def _timed(kind: KindInfo) -> str:
    """What the kind's latency column times, in a word ('latency', 'prefill')."""
    return kind.latency_heading.split(" p50")[0]


def compare(reference: Mapping, chosen: Mapping) -> dict:
    """Ratios of ``chosen`` against ``reference`` (both point records or table rows of one kind).

    Returns size_ratio (reference size / chosen size: >1 means smaller), speed_ratio (reference
    latency / chosen latency: >1 means faster), quality_change (the quality metric's change, in its
    change unit: accuracy points, percent of the reference's perplexity) and the phrases for each, e.g.
    "4.1x smaller", "2.7x faster", "-0.6 points accuracy"; ``paired`` is the metric's paired comparison
    on the same evaluation data (None when the records cannot be paired) and ``quality_measurable`` its
    verdict; ``quality_good`` whether the chosen point lost nothing that shows (for colouring).
    """
    _, metric = _kind_metric(reference, chosen)
    ref_size, size = _num(reference.get("size_bytes")), _num(chosen.get("size_bytes"))
    ref_lat, lat = _num(reference.get("latency_ms_p50")), _num(chosen.get("latency_ms_p50"))
    ref_q, q = _num(reference.get(metric.column)), _num(chosen.get(metric.column))
    size_ratio = ref_size / size if size > 0 else float("nan")
    speed_ratio = ref_lat / lat if lat > 0 else float("nan")
    comparable = math.isfinite(q) and math.isfinite(ref_q) and (ref_q != 0 or not metric.relative)
    change = metric.change(q, ref_q) if comparable else float("nan")
    size_text = _ratio_text(size_ratio, "smaller", "larger", "size unknown")
    speed_text = _ratio_text(speed_ratio, "faster", "slower", "latency unknown")
    overlap = ranges_overlap(reference, chosen)  # the headline, the cards and the sentence say the same
    if overlap:
        speed_text = "not measurably faster or slower"
    paired = metric.paired(chosen, reference)
    measurable = True
    if not math.isfinite(change):
        quality_text = f"{metric.label} unknown"
    elif paired is not None:
        # The paired comparison on the same evaluation data, with its 95% interval: within noise it says so.
        low, high = (metric.statistic_to_change(v) for v in paired.ci95)
        interval = f"{metric.change_text(change)}, 95% interval [{low:+.1f}, {high:+.1f}], n={paired.n}"
        measurable = paired.measurable
        quality_text = (f"{NO_CHANGE} in {metric.label} ({interval})" if not measurable
                        else f"{interval} {metric.label}")
    else:
        shown = round(change, 1)
        sign = "+" if shown > 0 else ("-" if shown < 0 else "±")
        quality_text = f"{sign}{metric.change_text(abs(shown))[1:]} {metric.label}"
        notes = []
        if not metric.higher_is_better:  # people assume higher is better: say it when it is not
            notes.append(f"{metric.format(q, brief=True)} vs {metric.format(ref_q, brief=True)}, lower is better")
        n = metric.sample_size(chosen)
        if n:
            notes.append(f"n={n} {metric.sample_name}; no paired interval stored")
        if notes:
            quality_text += f" ({'; '.join(notes)})"
    good = not measurable or (math.isfinite(change) and metric.loss(change) <= 0.05)
    # good / neutral / bad: green means better, grey unchanged (or within noise), red worse
    quality_tone = ("neutral" if not math.isfinite(change) or not measurable or round(change, 1) == 0
                    else "good" if metric.loss(change) < 0 else "bad")
    return {"size_ratio": size_ratio, "speed_ratio": speed_ratio, "quality_change": change, "metric": metric.name,
            "size_text": size_text, "speed_text": speed_text, "quality_text": quality_text,
            "quality_short": (f"{metric.label} unknown" if not math.isfinite(change) else NO_CHANGE if not measurable
                              else metric.change_text(change)),
            "size_tone": _tone(size_ratio), "speed_tone": _tone(speed_ratio), "quality_tone": quality_tone,
            "quality_measurable": measurable, "quality_good": good, "paired": paired,
            "headline": f"{size_text}, {speed_text}, {quality_text}",
            "slower": math.isfinite(speed_ratio) and speed_ratio < 1.0 and not overlap}


def _tone(ratio: float) -> str:
    """A size or speed ratio against the reference (above 1: better) as good, neutral (within 1%) or bad."""
    if not math.isfinite(ratio) or abs(ratio - 1.0) < 0.01:
        return "neutral"
    return "good" if ratio > 1.0 else "bad"


def _quality_cell(row: Mapping, metric: QualityMetric) -> str:
    """'96.50% [95.1, 98.2], n=360'."""
    text = metric.format(row.get(metric.column))
    ci = metric.interval(row) if finite(row.get(metric.column)) else None
    if ci is not None:
        lo, hi = (metric.brief_fmt.format(v * metric.scale) for v in ci)
        n = metric.sample_size(row)
        text += f" [{lo}, {hi}]" + (f", n={n}" if n is not None else "")
    return text


def _fmt_bytes(n) -> str:
    return size_text(n)  # binary units, as on every screen (results.units)


def _fmt(value, fmt: str, unit: str = "") -> str:
    v = _num(value)
    return format(v, fmt) + unit if math.isfinite(v) else "–"


def _limits(record: Mapping) -> str:
    """The share of each bound the point decodes at: weights (and KV cache) read per token against the
    machine's measured copy and read bandwidths (a runtime point's record has them; others do not)."""
    copy, read = _num(record.get("fraction_of_bandwidth_limit")), _num(record.get("fraction_of_read_limit"))
    if not math.isfinite(copy):
        return "–"
    text = f"{copy * 100:.0f}% of {_fmt(record.get('bandwidth_limit_tokens_per_s'), '.0f')} tokens/s"
    if math.isfinite(read):
        text += f" / {read * 100:.0f}% of {_fmt(record.get('read_limit_tokens_per_s'), '.0f')}"
    return text


def ranges_overlap(reference: Mapping, chosen: Mapping) -> bool:
    """Whether two points' p10-p90 latency ranges overlap: then neither is measurably faster."""
    lo_a, hi_a = _num(reference.get("latency_ms_p10")), _num(reference.get("latency_ms_p90"))
    lo_b, hi_b = _num(chosen.get("latency_ms_p10")), _num(chosen.get("latency_ms_p90"))
    if not all(math.isfinite(v) for v in (lo_a, hi_a, lo_b, hi_b)):
        return False
    return lo_a <= hi_b and lo_b <= hi_a


def comparison_rows(reference: Mapping, chosen: Mapping, among: list[Mapping] | None = None
                    ) -> list[tuple[str, str, str]]:
    """(figure, baseline, chosen) rows for the summary table; estimates are labelled. The quality rows are
    the metric's (value with its interval, how it was measured), the latency rows say what the kind times,
    the kind's own figures (``extra_columns``) follow; an optional figure (macro-F1, MACs, bandwidth limits,
    a kind's own figure) is left out when none of ``among`` has it (default: the two points), so a table of
    several points built row by row keeps its rows aligned."""
    kind, metric = _kind_metric(reference, chosen)
    pair = (reference, chosen)
    points = [reference, chosen, *(among or [])]

    def _either(_reference, _chosen, *fields: str) -> bool:
        return any(finite(r.get(f)) for r in points for f in fields)

    timed = kind.latency_heading.replace(" (ms)", "")
    rows = [("configuration", str(reference.get("label", "")), str(chosen.get("label", ""))),
            (f"{metric.axis_label or metric.label} [95% {metric.interval_method} interval], {metric.sample_name}",
             *(_quality_cell(r, metric) for r in pair))]
    if metric.protocol:
        rows.append((" / ".join(name for _, name in metric.protocol),
                     *(" / ".join(_fmt(r.get(f), ".0f") for f, _ in metric.protocol) for r in pair)))
    if _either(reference, chosen, "macro_f1"):
        rows.append(("macro-F1", *(_fmt(r.get("macro_f1"), ".4f") for r in pair)))
    rows += [
        (timed, *(_fmt(r.get("latency_ms_p50"), ".3f", " ms") for r in pair)),
        (timed.replace("p50", "p90"), *(_fmt(r.get("latency_ms_p90"), ".3f", " ms") for r in pair)),
        (f"{_timed(kind)} p10-p90 (repeats)",
         *(f"{_fmt(r.get('latency_ms_p10'), '.3f')}-{_fmt(r.get('latency_ms_p90'), '.3f')} ms "
           f"({_fmt(r.get('latency_runs'), '.0f')})" for r in pair))]
    for column in kind.extra_columns:  # the kind's own figures (one equal to the latency column is not repeated)
        repeats_latency = all(r.get(column.name) == r.get("latency_ms_p50") for r in points)
        if _either(reference, chosen, column.name) and not repeats_latency:
            rows.append((column.heading, *(column.fmt.format(_num(r.get(column.name)) * column.scale)
                                           if finite(r.get(column.name)) else "–" for r in pair)))
    if _either(reference, chosen, "fraction_of_bandwidth_limit"):
        rows.append(("decode against the bandwidth limits (copy / read)", *(_limits(r) for r in pair)))
    rows += [
        ("threads, load (1 min) / cores",
         *(f"{r.get('threads', '–')}, {r.get('load_avg_1m', '–')} / {r.get('cores', '–')}" for r in pair)),
        (kind.size_heading.split(" (")[0],
         *(_fmt_bytes(r.get("size_bytes")) + (f" ({r['size_written']})" if r.get("size_written") else "")
           for r in pair)),
        ("ideal size (estimate)", *(_fmt_bytes(r.get("ideal_size_bytes")) for r in pair)),
        ("parameters (non-zero)",
         *(f"{_fmt(r.get('params'), ',.0f')} ({_fmt(r.get('nonzero_params'), ',.0f')})" for r in pair))]
    if _either(reference, chosen, "macs"):
        rows.append(("MACs (estimate)", *(_fmt(r.get("macs"), ",.0f") for r in pair)))
    rows.append(("peak memory", *(_fmt_bytes(r.get("peak_memory_bytes")) for r in pair)))
    return rows


_CSS = """
body{font-family:Helvetica,Arial,sans-serif;color:#1F1D2B;margin:2rem auto;max-width:1150px;padding:0 1rem}
h1{color:#3A2DB8;margin-bottom:.2rem} .sub{color:#5E5A72;margin-top:0}
.headline{font-size:1.25rem;font-weight:600;margin:1rem 0;line-height:1.5}
.bad{color:#C0392B} .good{color:#1E8449}
table{border-collapse:collapse;margin:.6rem 0 1.4rem 0;font-size:.9rem}
th,td{border:1px solid #E3E0F5;padding:.3rem .6rem;text-align:right} th{background:#F3F2FB}
td:first-child,th:first-child{text-align:left}
.note{color:#5E5A72;font-size:.85rem}
dt{font-weight:700;margin-top:.4rem} dd{margin-left:1rem;color:#3A3850}
summary{cursor:pointer;font-weight:700;margin:1rem 0}
"""


GLOSSARY = [
    (r"\bft(\d+)\b|fine-tun", "fine-tune steps (ft60)",
     "after pruning, the model trains again for this many steps (ft60 = 60 steps) to win back accuracy"),
    (r"l1-structured|l2-structured|structured", "structured pruning (l1-structured)",
     "whole channels / neurons are removed, those whose weights are smallest (L1 or L2 norm): the model "
     "gets genuinely smaller and faster"),
    (r"unstructured|magnitude", "unstructured pruning", "single weights are set to zero; the shape stays the same"),
    (r"2:4", "2:4 sparsity", "in every group of 4 weights, 2 are zero (a pattern some hardware runs fast)"),
    (r"prune ratio|pruning ratio", "prune ratio", "the share of weights or channels removed (0.5 = half)"),
    (r"per-channel", "per-channel", "quantization with one scale per output channel (more accurate than per-tensor)"),
    (r"per-tensor", "per-tensor", "quantization with one scale for a whole weight tensor"),
    (r"\d+-bit|bits", "bit width (32-bit, 8-bit, ...)",
     "how many bits store each weight: 32 is ordinary floating point (fp32), 8 and below are integer codes"),
    (r"fp32", "fp32", "32-bit floating point, the original model's number format"),
    (r"\bp50\b", "p50 latency", "the median time to run one batch: half the runs were faster"),
    (r"\bp90\b", "p90 latency", "9 runs in 10 were at least this fast"),
    (r"MACs", "MACs", "multiply-accumulate operations per example, a rough count of the arithmetic (estimate)"),
    (r"\bdense\b", "dense execution", "ordinary kernels that multiply every weight, zeros included"),
    (r"\bsparse\b", "sparse execution", "kernels that skip zero weights"),
    (r"Pareto|front", "Pareto front", "the points no other point beats on quality (accuracy, or perplexity for a "
     "language model), latency and size at once"),
    (r"macro-F1", "macro-F1",
     "the F1 score averaged over classes (0-1): accuracy that gives small classes equal weight"),
    (r"ideal size", "ideal size (estimate)", "the size if every weight were stored in exactly its bit width"),
    (r"perplexity", "perplexity", "how surprised the language model is by held-out text: exp(mean negative "
     "log-likelihood per token); lower is better"),
    (r"prefill", "prefill", "reading the prompt: one forward pass over a whole sequence"),
    (r"accuracy points|points accuracy", "accuracy points",
     "percentage points: 97.0% to 96.5% is 0.5 points"),
]

# The report table's shared columns (field, heading, format); the quality columns, the latency heading and
# the kind's own figures are added by ``report_columns``.
REPORT_COLUMNS = [
    ("point_id", "point", "{:.0f}"), ("label", "configuration", None), ("pareto", "on the front", "yesno"),
    ("peer", "library peer (not shippable)", None),
    ("latency_ms_p50", "latency p50 (ms)", "{:.3f}"), ("speedup", "speed-up vs original", "{:.2f}x"),
    ("size_bytes", "size", "bytes"), ("compression", "smaller than original", "{:.1f}x"),
    ("prune_method", "pruning", None), ("prune_ratio", "prune ratio", "{:.2f}"),
    ("finetune_steps", "fine-tune steps", "{:.0f}"), ("bits", "bits", "{:.0f}"), ("granularity", "granularity", None),
    ("execution", "execution", None), ("macs", "MACs (estimate)", "{:,.0f}"), ("status", "status", None),
]


def report_columns(df: pd.DataFrame) -> list[tuple]:
    """(field, heading, format) of the report's table of ``df``'s kind: what the point is, the quality
    metric's value and change, latency (as the kind names it), size, the kind's own figures, config."""
    kind, metric = _kind_metric_of(df)
    shared = {f: (f, name, fmt) for f, name, fmt in REPORT_COLUMNS}
    quality = [(metric.column, metric.heading, lambda v: metric.fmt.format(metric.shown(v))),
               (metric.change_column, f"Δ {metric.label} ({metric.change_unit})", "{:+.2f}")]
    own = [(c.name, c.heading, lambda v, c=c: c.fmt.format(_num(v) * c.scale)) for c in kind.extra_columns]
    columns = [shared["point_id"], shared["label"], shared["peer"], shared["pareto"], *quality,
               ("latency_ms_p50", kind.latency_heading, "{:.3f}"), *own]
    return columns + [c for f, c in shared.items()
                      if f not in ("point_id", "label", "peer", "pareto", "latency_ms_p50")]


def _kind_metric_of(df: pd.DataFrame) -> tuple[KindInfo, QualityMetric]:
    kind = kind_of_rows(df)
    return kind, get_metric(kind.quality_metric)


def human(value, fmt) -> str:
    """A table cell for people: no 'None', 'nan', 'True' or '-0.7407'. ``fmt``: a format string, 'yesno',
    'pct', 'bytes', None (text) or a function of the value."""
    if fmt == "yesno":
        return "yes" if value is True or value == 1 or str(value) == "True" else "no"
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if fmt == "pct":
        return _fmt(_num(value) * 100, ".2f")
    if fmt == "bytes":
        return _fmt_bytes(value)
    if fmt is None:
        text = str(value)
        return "–" if text in ("None", "nan", "") else text
    v = _num(value)
    if not math.isfinite(v):
        return "–"
    out = fmt(v) if callable(fmt) else fmt.format(v)
    return "+0.00" if out == "-0.00" else out


def human_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every point for people; a column no point has a value in (a figure this kind does not measure) is
    left out."""
    cols = [(f, name, fmt) for f, name, fmt in report_columns(df) if f in df.columns]
    table = pd.DataFrame({name: [human(v, fmt) for v in df[f].tolist()] for f, name, fmt in cols})
    keep = [name for f, name, fmt in cols if fmt == "yesno" or (table[name] != "–").any()] if len(table) else []
    return table[keep] if len(table) else table


def headline_sentence(reference: Mapping, chosen: Mapping, n_test=None) -> str:
    """The report's first sentence, with how sure the quality figures are: the paired interval on the same
    evaluation data when both points kept it, else the metric's estimate from the test size."""
    cmp = compare(reference, chosen)
    kind, metric = _kind_metric(reference, chosen)
    speed_text = cmp["speed_text"]  # "not measurably faster or slower" when the p10-p90 ranges overlap
    timed = _timed(kind)
    at = "" if timed == "latency" else f" at {timed}"
    change = cmp["quality_change"]
    values = f"{metric.format(chosen.get(metric.column), brief=True)} vs " \
             f"{metric.format(reference.get(metric.column), brief=True)}"
    notes = [] if metric.higher_is_better else ["lower is better"]
    notes += [f"{name} {_fmt(chosen.get(f), '.0f')}" for f, name in metric.protocol if finite(chosen.get(f))]
    sentence = (f"The compressed model ({chosen.get('label', '')}) is {cmp['size_text']} and {speed_text}{at} "
                f"than the original, and {metric.change_phrase(change)} ({values}"
                + (f"; {', '.join(notes)}" if notes else "") + ").")
    paired = cmp["paired"]
    if paired is not None:  # the paired comparison on the same evaluation data says how sure the change is
        low, high = (metric.statistic_to_change(v) for v in paired.ci95)
        verdict = (f"{NO_CHANGE} in {metric.label}" if not paired.measurable
                   else f"a measurable change of {metric.change_text(change)}")
        return (sentence + f" On the same {paired.n:,} {metric.sample_name} that is {verdict} "
                f"(95% interval [{low:+.1f}, {high:+.1f}] {metric.change_unit}, {metric.paired_method}).")
    margin = metric.margin(chosen.get(metric.column), n_test)
    if math.isfinite(margin):
        sentence += (f" Each {metric.label} is measured on {int(_num(n_test)):,} {metric.sample_name}, so it is "
                     f"uncertain by about ±{margin:.1f} {metric.change_unit} (95% interval, estimate)")
        sentence += ("; the difference is within that uncertainty." if math.isfinite(change) and abs(change) <= margin
                     else ".")
    return sentence


def _glossary(text: str) -> list[tuple[str, str]]:
    return [(term, meaning) for pattern, term, meaning in GLOSSARY if re.search(pattern, text)]


def _figure_blocks(figures: Mapping[str, go.Figure], static: bool | None) -> list[str]:
    """Charts as PNG images (small) when kaleido can draw them, else interactive with plotly.js once."""
    if static is None:
        static = png_unavailable_reason() is None
    out = []
    first = True
    for name, fig in figures.items():
        if static:
            png = figure_png(fig, width=1000, height=int(fig.layout.height or 460), scale=1)  # the page's height
            out.append(f"<img alt='{html.escape(name)}' style='max-width:100%' "
                       f"src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>")
        else:
            out.append(fig.to_html(full_html=False, include_plotlyjs=True if first else False,
                                   div_id=f"chart-{name}", config={"displaylogo": False, "staticPlot": False}))
            first = False
    return out


def _control_paragraph(df: pd.DataFrame, chosen: Mapping) -> list[str]:
    """The chosen point against the fair control (unpruned, recovered with the same steps), when the run has one."""
    control = control_row(df) if len(df) and "is_control" in df.columns else None
    if control is None:
        return ["<p class='note'>This run has no control point (no point was fine-tuned), so the baseline is the "
                "only reference.</p>"]
    _, metric = _kind_metric_of(df)
    paired = metric.paired(chosen, control)
    if paired is None:
        return []
    low, high = (metric.statistic_to_change(v) for v in paired.ci95)
    text = f"{metric.change_text(metric.statistic_to_change(paired.estimate))}, 95% interval [{low:+.1f}, {high:+.1f}]"
    if not paired.measurable:
        text = f"{NO_CHANGE} ({text})"
    return [f"<p>Against the <b>control</b> ({html.escape(str(control.get('label', '')))}: the unpruned model "
            f"recovered with the same steps, rate and data as the pruned points): {html.escape(text)}. This "
            "separates what compression costs from what the extra fine-tuning gave.</p>"]


def build_report_html(title: str, run: Mapping, reference: Mapping, chosen: Mapping, df: pd.DataFrame,
                      figures: Mapping[str, go.Figure] | None = None, device: Mapping | None = None,
                      alternatives: list[Mapping] | None = None, static_charts: bool | None = None,
                      told=None) -> str:
    """One self-contained HTML file for people who do not compress models: a headline sentence with its
    uncertainty, the chosen point against the original and up to two alternatives, the measurement
    conditions, the charts (PNG images when kaleido can draw them: the file stays well under 1 MB), a
    glossary of the terms used, and every point in a folded table at the end. ``told`` (a ``story.Story``)
    puts the Present page's four answers first."""
    esc = html.escape
    kind, metric = _kind_metric(reference, chosen)
    base = run.get("baseline") or {}
    n_test = base.get("test")
    cols = [("original", reference), ("chosen", chosen)] + [
        (f"alternative {i + 1}", alt) for i, alt in enumerate(alternatives or [])]
    body = [f"<h1>{esc(title)}</h1>",
            f"<p class='sub'>run <b>{esc(str(run.get('name', '')))}</b> ({esc(str(run.get('run_id', '')))}) · "
            f"scenario {esc(str(run.get('scenario', '')))} · generated "
            f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>",
            f"<p class='headline'>{esc(headline_sentence(reference, chosen, n_test))}</p>",
            *([] if told is None else ["<h2>In ten seconds</h2><dl class='story'>" + "".join(
                f"<dt>{esc(a.question)}</dt><dd><b>{esc(a.answer)}</b>. {esc(a.detail)}</dd>" for a in told.answers)
                + "</dl>"]),
            f"<p>{esc(metric.label[:1].upper() + metric.label[1:])} changes "
            f"({'higher' if metric.higher_is_better else 'lower'} is better) are read against <b>the original</b> "
            f"(the run's uncompressed reference, point {esc(str(reference.get('point_id', '')))}): a "
            f"{esc(metric.paired_method)} on the same {esc(metric.sample_name)} when both points kept them. When "
            f"its 95% interval contains no change the report says '{NO_CHANGE}'.</p>",
            *_control_paragraph(df, chosen),
            *[f"<p class='bad'>Warning: {esc(w)}</p>" for w in condition_warnings(dict(chosen), dict(reference))],
            "<h2>The chosen point and the alternatives</h2><table><tr><th>figure</th>"
            + "".join(f"<th>{esc(name)}</th>" for name, _ in cols) + "</tr>"]
    rows = [comparison_rows(reference, row, [r for _, r in cols]) for _, row in cols]
    for i, (name, *_rest) in enumerate(rows[0]):
        cells = [rows[0][i][1]] + [r[i][2] for r in rows[1:]]
        body.append(f"<tr><td>{esc(name)}</td>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    body.append("<tr><td>against the original</td><td>–</td>" + "".join(
        f"<td>{esc(compare(reference, row)['headline'])}</td>" for _, row in cols[1:]) + "</tr></table>")
    body.extend(peer_section_html(df, chosen))  # library peers beside the product's points, when the run has any
    cond = [f"test set: {int(_num(n_test)):,} examples" if math.isfinite(_num(n_test)) else "test set: size unknown",
            *(f"{name}: {human(chosen.get(f), '{:.0f}')}" for f, name in metric.protocol),
            f"batch size: {human(chosen.get('batch_size'), '{:.0f}')}",
            f"torch threads used: {human(chosen.get('threads'), '{:.0f}')}",
            f"device: {chosen.get('device') or '–'}", f"host: {chosen.get('host') or '–'}"]
    for key, name in (("cpu", "processor"), ("cores", "cores"), ("torch", "torch"),
                      ("load_avg_1m", "machine load (1-minute load average when the report was made)")):
        if device and device.get(key) is not None:
            cond.append(f"{name}: {device[key]}")
    body.append("<h2>How it was measured</h2><ul>" + "".join(f"<li>{esc(c)}</li>" for c in cond) + "</ul>"
                f"<p class='note'>Latency ({esc(kind.latency_heading)}) is the median over repeated runs on this "
                "machine; other work on the machine makes it slower and noisier. MACs and ideal size are estimates; "
                "every other figure was measured.</p>")
    if figures:
        body.append("<h2>Charts</h2>")
        body.extend(_figure_blocks(figures, static_charts))
    table = human_table(df)
    text_so_far = " ".join(body) + " " + table.to_string()  # every term the reader will meet
    gloss = _glossary(text_so_far)
    if gloss:
        body.append("<h2>Glossary</h2><dl class='glossary'>" + "".join(
            f"<dt>{esc(t)}</dt><dd>{esc(m)}</dd>" for t, m in gloss) + "</dl>")
    body.append(f"<details><summary>All measured points ({len(table)}; click to open)</summary>")
    body.append(table.to_html(index=False, border=0, escape=True))
    body.append("</details><p class='note'>Charts drawn with plotly. Ratios are against the run's original "
                "(unpruned, 32-bit, dense) point; a speed-up below 1.0x means slower than it.</p>")
    return "\n".join([f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
                      f"<style>{_CSS}</style></head><body>", *body, "</body></html>"])
