"""Per-block sensitivity of a causal LM: quantize ONE decoder block's Linears at a time (round-to-nearest) and
measure the perplexity on the held-out text, to see which blocks to keep at higher precision.

The profile has the classifier profile's shape (``SensitivityProfile``; rows = blocks, ``drop_points`` = the
perplexity increase in percent, ``params["quality"] == "perplexity"``), so the store, the CLI table and the
heatmap read it alike. ``keep_high_precision`` lists the blocks whose quantization hurts most.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from typing import Annotated

import torch
from pydantic import AfterValidator, BeforeValidator, Field, StrictInt
from pydantic_core import PydanticCustomError

from gemini_core.errors import Cancelled, ConfigError
from gemini_core.kinds.llm import metrics, text_data
from gemini_core.kinds.llm.calibrate import block_linears, decoder_blocks
from gemini_core.kinds.llm.quantize import check_grid, group_size_of, rtn
from gemini_core.kinds.llm.scenario import LLMScenario
from gemini_core.progress import ProgressFn, notify
from gemini_core.results.sensitivity import SensitivityProfile, most_sensitive
from gemini_core.results.store import Store
from gemini_core.settings import Says, settings


def _as_int(value) -> int:
    """A bit width read with int(), as the profile always read them ("4" and 4.0 are 4)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PydanticCustomError("whole_number", "must be a whole number") from None


def _descending(bits: tuple) -> tuple:
    return tuple(sorted(dict.fromkeys(bits), reverse=True))


Count = Annotated[StrictInt, Field(ge=1)]


@settings
class LLMSensitivityParams:
    # at least one bit width from 2 to 8, kept highest first without repeats
    bits: Annotated[tuple[Annotated[int, BeforeValidator(_as_int), Field(ge=2, le=8)], ...],
                    Field(min_length=1, title="LLM sensitivity bits"), Says("{name} {value} must be between 2 and 8"),
                    AfterValidator(_descending)] = (4, 3)
    # any spelling ("g64", "group-64", "per-channel") is stored as the number, None for per-channel
    group_size: Annotated[int | None, BeforeValidator(group_size_of)] = 64
    eval_tokens: Count = 1024
    context_len: Count = 512
    keep: Count = 3  # how many of the most sensitive blocks to name for higher precision

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["bits"] = list(self.bits)
        return {**data, "quality": "perplexity", "method": "rtn", "ratios": []}

    @classmethod
    def from_dict(cls, data: dict) -> "LLMSensitivityParams":
        """From ``to_dict``'s form (its descriptive fields are dropped); an unknown field is one line."""
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(data) - names - {"quality", "method", "ratios", "rows", "keep_high_precision"}
        if extra:
            raise ConfigError(f"unknown LLM sensitivity setting(s): {', '.join(sorted(extra))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


def llm_analysis_id(baseline_key: str, params: LLMSensitivityParams) -> str:
    blob = json.dumps({"baseline": baseline_key, "params": params.to_dict(), "threads": torch.get_num_threads()},
                      sort_keys=True)
    return "llm-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def analyse_llm(scenario: LLMScenario, params: LLMSensitivityParams | None = None, store: Store | None = None,
                force: bool = False, progress: ProgressFn | None = None,
                should_stop: Callable[[], bool] | None = None,
                on_profile: Callable[[SensitivityProfile], None] | None = None) -> SensitivityProfile:
    """Quantize each decoder block alone at each bit width; stored in the run store as it grows."""
    params = params or LLMSensitivityParams()
    store = store or Store()
    lm = scenario.load()
    baseline_key = scenario.baseline_key()
    analysis_id = llm_analysis_id(baseline_key, params)
    found = None if force else store.get_analysis(analysis_id)
    if found is not None and found["status"] == "complete":
        return SensitivityProfile.from_dict(found["result"])
    model = lm.model
    blocks = decoder_blocks(model)
    for lin in block_linears(blocks[0]).values():
        check_grid(min(params.bits), params.group_size, lin.in_features)
    ids = text_data.evaluation_ids(lm.tokenizer, scenario.text_split, params.eval_tokens)
    started = time.perf_counter()
    reference = metrics.perplexity(model, ids, params.context_len)
    # the profile's rows are decoder blocks (the heatmap's words); not part of the parameters' key
    described = {**params.to_dict(), "rows": "decoder block"}
    profile = SensitivityProfile(analysis_id, "llm", baseline_key, described, "cpu", split="evaluation text",
                                 examples=reference["tokens_scored"], baseline=reference,
                                 total_steps=len(blocks) * len(params.bits))

    def keep(status: str) -> None:
        profile.status, profile.seconds = status, round(time.perf_counter() - started, 2)
        store.save_analysis(analysis_id, baseline_key, "llm", params.to_dict(), profile.to_dict(), status)
        if on_profile is not None:
            on_profile(profile)

    try:
        for index, block in enumerate(blocks):
            linears = block_linears(block)
            originals = {name: lin.weight.detach().clone() for name, lin in linears.items()}
            results = []
            try:
                for bits in params.bits:
                    if should_stop is not None and should_stop():
                        raise Cancelled("sensitivity stopped")
                    with torch.no_grad():
                        for name, lin in linears.items():
                            lin.weight.copy_(rtn(originals[name], bits, params.group_size))
                    ppl = metrics.perplexity(model, ids, params.context_len)["perplexity"]
                    increase = (ppl / reference["perplexity"] - 1.0) * 100.0
                    results.append({"bits": bits, "perplexity": ppl, "drop_points": increase})
                    profile.done_steps += 1
                    notify(progress, "message", f"block {index}: {bits}-bit perplexity {ppl:.3f} "
                                                f"({increase:+.2f}%)")
            finally:
                with torch.no_grad():
                    for name, lin in linears.items():
                        lin.weight.copy_(originals[name])
            weights = torch.cat([w.reshape(-1) for w in originals.values()]).float()
            profile.quantization.append({
                "layer": f"block {index}", "params": int(weights.numel()), "results": results,
                "max_abs_over_std": float(weights.abs().max() / weights.std().clamp(min=1e-12))})
            keep("running")
    except Cancelled:
        keep("cancelled")
        return profile
    profile.params["keep_high_precision"] = keep_high_precision(profile, params.keep)
    keep("complete")
    return profile


def keep_high_precision(profile: SensitivityProfile, count: int) -> list[dict]:
    """The ``count`` blocks whose quantization at the lowest profiled bit width raises perplexity most."""
    return most_sensitive(profile, count, "block", "perplexity_increase_pct")
