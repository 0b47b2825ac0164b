"""The classifier grid flags of the one ``sweep`` command (and the one line printed per classifier point).
The command adds every kind's flags; the kind a scenario builds reads its own and refuses the others'."""
from __future__ import annotations

from gemini_core.config import EXECUTIONS, PRUNE_METHODS
from gemini_core.device import busy_warning
from gemini_core.errors import GeminiError
from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.measure import memory_cap_bytes
from gemini_core.results.stats import describe_delta
from gemini_core.settings_flags import SettingsFlags

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


def add_to(parser) -> None:
    SPEC_FLAGS.add_to(parser)


def refuse(args) -> None:
    """One line when this kind's grid flags are given for a scenario of another kind."""
    changed = {k: v for k, v in SPEC_FLAGS.given(args).items() if str(v) != str(SPEC_FLAGS.defaults.get(k))}
    if changed:
        flags = ", ".join(SPEC_FLAGS.flag(k) for k in changed)
        raise GeminiError(f"{flags}: classifier grid flags; for --scenario llm use --quant, --quant-bits, "
                          "--group-size, --llm-prune, --sparsity, --mlp-ratio, --head-ratio, --llm-recovery")


def spec_from(args) -> SweepSpec:
    spec = SweepSpec.from_strings(**SPEC_FLAGS.given(args))
    memory_cap_bytes()  # a malformed GEMINI_MAX_BATCH_BYTES fails here, before any training
    return spec


def plan_notes(scenario, spec: SweepSpec) -> list[str]:
    return []


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
