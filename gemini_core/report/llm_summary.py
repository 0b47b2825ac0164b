"""The report's words for an LLM run: perplexity (lower is better) is the quality, not accuracy."""
from __future__ import annotations

import math
from typing import Mapping


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _fmt(value, fmt: str, unit: str = "") -> str:
    v = _num(value)
    return format(v, fmt) + unit if math.isfinite(v) else "–"


def is_llm_point(row: Mapping) -> bool:
    return math.isfinite(_num(row.get("perplexity")))


def perplexity_text(reference: Mapping, chosen: Mapping) -> str:
    ref, got = _num(reference.get("perplexity")), _num(chosen.get("perplexity"))
    if not (math.isfinite(ref) and math.isfinite(got) and ref > 0):
        return "perplexity unknown"
    change = (got / ref - 1.0) * 100.0
    word = "higher (worse)" if change > 0 else "lower (better)"
    return f"perplexity {got:.3f} vs {ref:.3f} ({abs(change):.1f}% {word})" if round(change, 1) else \
        f"perplexity {got:.3f} vs {ref:.3f} (unchanged)"


def llm_headline(reference: Mapping, chosen: Mapping, size_text: str, speed_text: str) -> str:
    """The first sentence of an LLM report. A prefill time whose p10-p90 range overlaps the original's is
    no measurable change (LLM points are timed once, under whatever load the machine had)."""
    if _ranges_overlap(reference, chosen):
        speed_text = "not measurably faster or slower"
    sentence = (f"The compressed language model ({chosen.get('label', '')}) is {size_text} and {speed_text} at "
                f"prefill than the original; its {perplexity_text(reference, chosen)} on held-out text "
                f"({_fmt(chosen.get('tokens_scored'), '.0f')} tokens, "
                f"context {_fmt(chosen.get('context_len'), '.0f')}, "
                f"stride {_fmt(chosen.get('stride'), '.0f')}; lower is better).")
    if math.isfinite(_num(chosen.get("accuracy"))):
        sentence += (f" Zero-shot accuracy on the labelled rows: {_num(chosen['accuracy']) * 100:.1f}% vs "
                     f"{_num(reference.get('accuracy')) * 100:.1f}%.")
    return sentence


def llm_comparison_rows(reference: Mapping, chosen: Mapping, fmt_bytes) -> list[tuple[str, str, str]]:
    def pair(key, fmt, unit=""):
        return _fmt(reference.get(key), fmt, unit), _fmt(chosen.get(key), fmt, unit)

    rows = [("configuration", str(reference.get("label", "")), str(chosen.get("label", ""))),
            ("perplexity (lower is better)", *pair("perplexity", ".3f")),
            ("context / stride / tokens scored",
             *(f"{_fmt(r.get('context_len'), '.0f')} / {_fmt(r.get('stride'), '.0f')} / "
               f"{_fmt(r.get('tokens_scored'), '.0f')}" for r in (reference, chosen)))]
    if math.isfinite(_num(chosen.get("accuracy"))):
        rows.append(("zero-shot accuracy", *pair("accuracy", ".3f")))
    rows += [("prefill p50 of one sequence", *pair("prefill_ms_p50", ".1f", " ms")),
             ("prefill p10-p90", *(f"{_fmt(r.get('prefill_ms_p10'), '.1f')}-{_fmt(r.get('prefill_ms_p90'), '.1f')} ms"
                                   for r in (reference, chosen))),
             ("decode (greedy)", *pair("decode_tokens_per_s", ".1f", " tokens/s")),
             ("decode against the bandwidth limits (copy / read)", *(_limits(r) for r in (reference, chosen))),
             ("threads, load (1 min) / cores",
              *(f"{r.get('threads', '–')}, {r.get('load_avg_1m', '–')} / {r.get('cores', '–')}"
                for r in (reference, chosen))),
             ("bytes written", *(f"{fmt_bytes(r.get('size_bytes'))} ({r.get('size_written', 'float32 safetensors')})"
                                 for r in (reference, chosen))),
             ("ideal packed size (estimate)", fmt_bytes(reference.get("ideal_size_bytes")),
              fmt_bytes(chosen.get("ideal_size_bytes"))),
             ("parameters (non-zero)",
              *(f"{_fmt(r.get('params'), ',.0f')} ({_fmt(r.get('nonzero_params'), ',.0f')})"
                for r in (reference, chosen))),
             ("peak memory", fmt_bytes(reference.get("peak_memory_bytes")), fmt_bytes(chosen.get("peak_memory_bytes")))]
    return rows


def _limits(record: Mapping) -> str:
    """The share of each bound the point decodes at: weights (and KV cache) read per token against the
    machine's measured copy and read bandwidths (a runtime point's record has them; torch points do not)."""
    copy, read = _num(record.get("fraction_of_bandwidth_limit")), _num(record.get("fraction_of_read_limit"))
    if not math.isfinite(copy):
        return "–"
    text = f"{copy * 100:.0f}% of {_fmt(record.get('bandwidth_limit_tokens_per_s'), '.0f')} tokens/s"
    if math.isfinite(read):
        text += f" / {read * 100:.0f}% of {_fmt(record.get('read_limit_tokens_per_s'), '.0f')}"
    return text


def _ranges_overlap(reference: Mapping, chosen: Mapping) -> bool:
    lo_a, hi_a = _num(reference.get("latency_ms_p10")), _num(reference.get("latency_ms_p90"))
    lo_b, hi_b = _num(chosen.get("latency_ms_p10")), _num(chosen.get("latency_ms_p90"))
    if not all(math.isfinite(v) for v in (lo_a, hi_a, lo_b, hi_b)):
        return False
    return lo_a <= hi_b and lo_b <= hi_a

