"""The stakeholder summary: baseline vs chosen point in one sentence, and a self-contained HTML report.

Everything here is computed from measured values only (the dense fp32 reference point of the
run and the chosen point); estimates (MACs, ideal size) are labelled wherever they appear.
No Streamlit in here.
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
from gemini_core.report.llm_summary import is_llm_point, llm_comparison_rows, llm_headline, perplexity_text
from gemini_core.results.stats import NO_CHANGE, paired_difference, parse_bits, wilson_interval
from gemini_core.results.table import control_row


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


def compare(reference: Mapping, chosen: Mapping) -> dict:
    """Ratios of ``chosen`` against ``reference`` (both point records or table rows).

    Returns size_ratio (reference size / chosen size: >1 means smaller), speed_ratio (reference
    latency / chosen latency: >1 means faster), accuracy_delta_pts (percentage points) and the
    phrases for each, e.g. "4.1x smaller", "2.7x faster", "-0.6 points accuracy".
    """
    ref_size, size = _num(reference.get("size_bytes")), _num(chosen.get("size_bytes"))
    ref_lat, lat = _num(reference.get("latency_ms_p50")), _num(chosen.get("latency_ms_p50"))
    ref_acc, acc = _num(reference.get("accuracy")), _num(chosen.get("accuracy"))
    size_ratio = ref_size / size if size > 0 else float("nan")
    speed_ratio = ref_lat / lat if lat > 0 else float("nan")
    delta = (acc - ref_acc) * 100.0
    size_text = _ratio_text(size_ratio, "smaller", "larger", "size unknown")
    speed_text = _ratio_text(speed_ratio, "faster", "slower", "latency unknown")
    paired = _paired(reference, chosen)
    measurable = True
    if not math.isfinite(delta):
        acc_text = "accuracy unknown"
    elif paired is not None:
        # The paired difference on the same test examples, with its 95% interval: within noise it says so.
        low, high = (v * 100 for v in paired["accuracy_delta_ci95"])
        interval = f"{delta:+.1f} points, 95% interval [{low:+.1f}, {high:+.1f}], n={paired['paired_n']}"
        measurable = paired["measurable"]
        acc_text = f"{NO_CHANGE} in accuracy ({interval})" if not measurable else f"{interval} accuracy"
    else:
        shown = round(delta, 1)
        acc_text = f"{'+' if shown > 0 else ('-' if shown < 0 else '±')}{abs(shown):.1f} points accuracy"
        n = chosen.get("test_n")
        if n:
            acc_text += f" (test n={int(n)}; no paired interval stored)"
    if is_llm_point(chosen):  # an LLM point: perplexity, not accuracy, is its quality
        acc_text = perplexity_text(reference, chosen)
    return {"size_ratio": size_ratio, "speed_ratio": speed_ratio, "accuracy_delta_pts": delta,
            "size_text": size_text, "speed_text": speed_text, "accuracy_text": acc_text,
            "accuracy_measurable": measurable, "paired": paired,
            "headline": f"{size_text}, {speed_text}, {acc_text}",
            "slower": math.isfinite(speed_ratio) and speed_ratio < 1.0}


def _paired(reference: Mapping, chosen: Mapping) -> dict | None:
    a, b = parse_bits(chosen.get("test_correct")), parse_bits(reference.get("test_correct"))
    if a is None or b is None or len(a) != len(b):
        return None
    return paired_difference(a, b)


def _accuracy_cell(row: Mapping) -> str:
    acc = _num(row.get("accuracy"))
    text = _fmt(acc * 100, ".2f") + " %"
    n = row.get("test_n")
    if n and math.isfinite(acc):
        low, high = wilson_interval(round(acc * int(n)), int(n))
        text += f" [{low * 100:.1f}, {high * 100:.1f}], n={int(n)}"
    return text


def _fmt_bytes(n) -> str:
    n = _num(n)
    if not math.isfinite(n):
        return "–"
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.2f} MB"
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n:.0f} B"


def _fmt(value, fmt: str) -> str:
    v = _num(value)
    return format(v, fmt) if math.isfinite(v) else "–"


def comparison_rows(reference: Mapping, chosen: Mapping) -> list[tuple[str, str, str]]:
    """(figure, baseline, chosen) rows for the summary table; estimates are labelled."""
    if is_llm_point(chosen):
        return llm_comparison_rows(reference, chosen, _fmt_bytes)
    return [
        ("configuration", str(reference.get("label", "")), str(chosen.get("label", ""))),
        ("test accuracy [95% Wilson interval], test size", _accuracy_cell(reference), _accuracy_cell(chosen)),
        ("macro-F1", _fmt(reference.get("macro_f1"), ".4f"), _fmt(chosen.get("macro_f1"), ".4f")),
        ("latency p50 per batch", _fmt(reference.get("latency_ms_p50"), ".3f") + " ms",
         _fmt(chosen.get("latency_ms_p50"), ".3f") + " ms"),
        ("latency p90 per batch", _fmt(reference.get("latency_ms_p90"), ".3f") + " ms",
         _fmt(chosen.get("latency_ms_p90"), ".3f") + " ms"),
        ("latency p10-p90 (repeats)",
         f"{_fmt(reference.get('latency_ms_p10'), '.3f')}-{_fmt(reference.get('latency_ms_p90'), '.3f')} ms "
         f"({_fmt(reference.get('latency_runs'), '.0f')})",
         f"{_fmt(chosen.get('latency_ms_p10'), '.3f')}-{_fmt(chosen.get('latency_ms_p90'), '.3f')} ms "
         f"({_fmt(chosen.get('latency_runs'), '.0f')})"),
        ("threads, load (1 min) / cores", f"{reference.get('threads', '–')}, {reference.get('load_avg_1m', '–')} / "
         f"{reference.get('cores', '–')}", f"{chosen.get('threads', '–')}, {chosen.get('load_avg_1m', '–')} / "
         f"{chosen.get('cores', '–')}"),
        ("checkpoint size", _fmt_bytes(reference.get("size_bytes")), _fmt_bytes(chosen.get("size_bytes"))),
        ("ideal size (estimate)", _fmt_bytes(reference.get("ideal_size_bytes")),
         _fmt_bytes(chosen.get("ideal_size_bytes"))),
        ("parameters (non-zero)",
         f"{_fmt(reference.get('params'), ',.0f')} ({_fmt(reference.get('nonzero_params'), ',.0f')})",
         f"{_fmt(chosen.get('params'), ',.0f')} ({_fmt(chosen.get('nonzero_params'), ',.0f')})"),
        ("MACs (estimate)", _fmt(reference.get("macs"), ",.0f"), _fmt(chosen.get("macs"), ",.0f")),
        ("peak memory", _fmt_bytes(reference.get("peak_memory_bytes")), _fmt_bytes(chosen.get("peak_memory_bytes"))),
    ]


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


def _css_class(good: bool) -> str:
    return "good" if good else "bad"


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

REPORT_COLUMNS = [
    ("point_id", "point", "{:.0f}"), ("label", "configuration", None), ("pareto", "on the front", "yesno"),
    ("accuracy", "accuracy (%)", "pct"), ("accuracy_delta_pts", "Δ accuracy (points)", "{:+.2f}"),
    ("latency_ms_p50", "latency p50 (ms)", "{:.3f}"), ("speedup", "speed-up vs original", "{:.2f}x"),
    ("size_bytes", "size", "bytes"), ("compression", "smaller than original", "{:.1f}x"),
    ("prune_method", "pruning", None), ("prune_ratio", "prune ratio", "{:.2f}"),
    ("finetune_steps", "fine-tune steps", "{:.0f}"), ("bits", "bits", "{:.0f}"), ("granularity", "granularity", None),
    ("execution", "execution", None), ("macs", "MACs (estimate)", "{:,.0f}"), ("status", "status", None),
]


LLM_REPORT_COLUMNS = [("perplexity", "perplexity (lower is better)", "{:.3f}"),
                      ("perplexity_increase_pct", "perplexity vs original (%)", "{:+.1f}"),
                      ("decode_tokens_per_s", "decode (tokens/s)", "{:.1f}")]


def human(value, fmt) -> str:
    """A table cell for people: no 'None', 'nan', 'True' or '-0.7407'."""
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
    out = fmt.format(v)
    return "+0.00" if out == "-0.00" else out


def human_table(df: pd.DataFrame) -> pd.DataFrame:
    columns = REPORT_COLUMNS
    if len(df) and "perplexity" in df.columns and df["perplexity"].notna().any():  # an LLM run
        columns = [c for c in REPORT_COLUMNS if c[0] not in ("accuracy", "accuracy_delta_pts", "macs")
                   or (c[0] == "accuracy" and df["accuracy"].notna().any())]
        columns[3:3] = LLM_REPORT_COLUMNS
    cols = [(f, name, fmt) for f, name, fmt in columns if f in df.columns]
    return pd.DataFrame({name: [human(v, fmt) for v in df[f].tolist()] for f, name, fmt in cols})


def accuracy_margin_pts(accuracy, n_test) -> float:
    """Half-width of the 95% interval of an accuracy measured on ``n_test`` examples, in points (normal
    approximation of the binomial: 1.96 * sqrt(p (1 - p) / n)); NaN without a test-set size."""
    p, n = _num(accuracy), _num(n_test)
    if not (math.isfinite(p) and math.isfinite(n) and n > 0):
        return float("nan")
    return 196.0 * math.sqrt(max(p * (1 - p), 1.0 / n) / n)  # never 0: at least one error could happen


def headline_sentence(reference: Mapping, chosen: Mapping, n_test=None) -> str:
    """The report's first sentence, with how sure the accuracy figures are."""
    cmp = compare(reference, chosen)
    if is_llm_point(chosen):
        return llm_headline(reference, chosen, cmp["size_text"], cmp["speed_text"])
    delta = cmp["accuracy_delta_pts"]
    lost = ("loses no accuracy" if math.isfinite(delta) and round(delta, 1) == 0 else
            f"{'gains' if delta > 0 else 'loses'} {abs(delta):.1f} accuracy points" if math.isfinite(delta)
            else "has an unknown accuracy")
    acc, ref_acc = _fmt(_num(chosen.get("accuracy")) * 100, ".1f"), _fmt(_num(reference.get("accuracy")) * 100, ".1f")
    sentence = (f"The compressed model ({chosen.get('label', '')}) is {cmp['size_text']} and {cmp['speed_text']} "
                f"than the original, and {lost} ({acc}% vs {ref_acc}%).")
    paired = cmp["paired"]
    if paired is not None:  # the paired difference on the same test examples says how sure the change is
        low, high = (v * 100 for v in paired["accuracy_delta_ci95"])
        verdict = (f"{NO_CHANGE} in accuracy" if not paired["measurable"]
                   else f"a measurable change of {delta:+.1f} points")
        return (sentence + f" On the same {paired['paired_n']:,} test examples that is {verdict} "
                f"(95% interval [{low:+.1f}, {high:+.1f}] points, paired bootstrap).")
    margin = accuracy_margin_pts(chosen.get("accuracy"), n_test)
    if math.isfinite(margin):
        sentence += (f" Each accuracy is measured on {int(_num(n_test)):,} test examples, so it is uncertain by "
                     f"about ±{margin:.1f} points (95% interval, estimate)")
        sentence += ("; the difference is within that uncertainty." if math.isfinite(delta) and abs(delta) <= margin
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
            png = figure_png(fig, width=1000, height=460, scale=1)
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
    paired = _paired(control, chosen)
    if paired is None:
        return []
    low, high = (v * 100 for v in paired["accuracy_delta_ci95"])
    text = f"{paired['accuracy_delta'] * 100:+.1f} points, 95% interval [{low:+.1f}, {high:+.1f}]"
    if not paired["measurable"]:
        text = f"{NO_CHANGE} ({text})"
    return [f"<p>Against the <b>control</b> ({html.escape(str(control.get('label', '')))}: the unpruned model "
            f"recovered with the same steps, rate and data as the pruned points): {html.escape(text)}. This "
            "separates what compression costs from what the extra fine-tuning gave.</p>"]


def build_report_html(title: str, run: Mapping, reference: Mapping, chosen: Mapping, df: pd.DataFrame,
                      figures: Mapping[str, go.Figure] | None = None, device: Mapping | None = None,
                      alternatives: list[Mapping] | None = None, static_charts: bool | None = None) -> str:
    """One self-contained HTML file for people who do not compress models: a headline sentence with its
    uncertainty, the chosen point against the original and up to two alternatives, the measurement
    conditions, the charts (PNG images when kaleido can draw them: the file stays well under 1 MB), a
    glossary of the terms used, and every point in a folded table at the end."""
    esc = html.escape
    base = run.get("baseline") or {}
    n_test = base.get("test")
    cols = [("original", reference), ("chosen", chosen)] + [
        (f"alternative {i + 1}", alt) for i, alt in enumerate(alternatives or [])]
    body = [f"<h1>{esc(title)}</h1>",
            f"<p class='sub'>run <b>{esc(str(run.get('name', '')))}</b> ({esc(str(run.get('run_id', '')))}) · "
            f"scenario {esc(str(run.get('scenario', '')))} · generated "
            f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>",
            f"<p class='headline'>{esc(headline_sentence(reference, chosen, n_test))}</p>",
            (f"<p>Perplexity (lower is better) is read against <b>the original</b> (the uncompressed model, point "
             f"{esc(str(reference.get('point_id', '')))}) on the same held-out text.</p>") if is_llm_point(chosen) else
            f"<p>Accuracy changes are read against <b>the original</b> (the unpruned dense 32-bit model as trained, "
            f"point {esc(str(reference.get('point_id', '')))}): a paired comparison on the same test examples. "
            f"When its 95% interval contains 0 the report says '{NO_CHANGE}'.</p>",
            *_control_paragraph(df, chosen),
            *[f"<p class='bad'>Warning: {esc(w)}</p>" for w in condition_warnings(dict(chosen), dict(reference))],
            "<h2>The chosen point and the alternatives</h2><table><tr><th>figure</th>"
            + "".join(f"<th>{esc(name)}</th>" for name, _ in cols) + "</tr>"]
    rows = [comparison_rows(reference, row) for _, row in cols]
    for i, (name, *_rest) in enumerate(rows[0]):
        cells = [rows[0][i][1]] + [r[i][2] for r in rows[1:]]
        body.append(f"<tr><td>{esc(name)}</td>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    body.append("<tr><td>against the original</td><td>–</td>" + "".join(
        f"<td>{esc(compare(reference, row)['headline'])}</td>" for _, row in cols[1:]) + "</tr></table>")
    cond = [f"test set: {int(_num(n_test)):,} examples" if math.isfinite(_num(n_test)) else "test set: size unknown",
            f"batch size: {human(chosen.get('batch_size'), '{:.0f}')}",
            f"torch threads used: {human(chosen.get('threads'), '{:.0f}')}",
            f"device: {chosen.get('device') or '–'}", f"host: {chosen.get('host') or '–'}"]
    for key, name in (("cpu", "processor"), ("cores", "cores"), ("torch", "torch"),
                      ("load_avg_1m", "machine load (1-minute load average when the report was made)")):
        if device and device.get(key) is not None:
            cond.append(f"{name}: {device[key]}")
    body.append("<h2>How it was measured</h2><ul>" + "".join(f"<li>{esc(c)}</li>" for c in cond) + "</ul>"
                "<p class='note'>Latency is the median (p50) time of one batch over repeated runs on this machine; "
                "other work on the machine makes it slower and noisier. MACs and ideal size are estimates; every "
                "other figure was measured.</p>")
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
