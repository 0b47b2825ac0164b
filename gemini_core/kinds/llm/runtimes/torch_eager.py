"""torch eager: the model as it is (float32, the product's dequantized weights), a DynamicCache."""
from __future__ import annotations

import torch
from torch import nn

from gemini_core.kinds.llm.runtimes.base import (
    LLMRunSettings,
    Runner,
    cache_keyword,
    kv_elements_per_position,
    returned_cache,
)


class TorchRunner(Runner):
    execution = "torch"

    def __init__(self, model, settings: LLMRunSettings):
        self.model = model.eval()
        self.threads = settings.threads
        self.past = None
        self.cache_kw = cache_keyword(model.forward)

    @torch.inference_mode()
    def logits(self, ids):
        torch.set_num_threads(self.threads)
        return self.model(input_ids=ids.reshape(1, -1), use_cache=False).logits[0].float()

    @torch.inference_mode()
    def start(self, prompt):
        torch.set_num_threads(self.threads)
        out = self.model(input_ids=prompt.reshape(1, -1), use_cache=True, logits_to_keep=1)
        self.past = returned_cache(out)
        return int(out.logits[0, -1].argmax())

    @torch.inference_mode()
    def step(self, token):
        out = self.model(input_ids=torch.tensor([[token]]), use_cache=True, **{self.cache_kw: self.past})
        self.past = returned_cache(out)
        return int(out.logits[0, -1].argmax())

    def weight_bytes_per_token(self):
        return sum(m.weight.numel() * m.weight.element_size() for m in self.model.modules() if isinstance(m, nn.Linear))

    def kv_bytes_per_position(self):
        return kv_elements_per_position(self.model.config) * next(self.model.parameters()).element_size()

    def describe(self):
        return {"execution": self.execution, "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
                "threads": self.threads}


def load(model, _tokenizer, settings: LLMRunSettings) -> TorchRunner:
    return TorchRunner(model, settings)
