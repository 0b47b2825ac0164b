"""Causal LMs on real runtimes: torch eager, OpenVINO (stateful, the product's own weight grid),
ONNX Runtime GenAI, llama.cpp; decode measured against the machine's bandwidth limit; runnable exports."""
from gemini_core.kinds.llm.runtimes.api import measure_on_runtime
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings
from gemini_core.kinds.llm.runtimes.registry import LLM_EXECUTIONS, names

__all__ = ["LLMRunSettings", "LLM_EXECUTIONS", "measure_on_runtime", "names"]
