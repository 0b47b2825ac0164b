"""Early stopping on validation NDCG@10, one bookkeeping for every way the recommender trains (gradient steps
in train.py, alternating least squares in als.py): the same record, progress line, best state and stop reason."""
from __future__ import annotations

import copy
import math
import time

from torch import nn

from gemini_core.kinds.recommend.data import RankingSplit
from gemini_core.kinds.recommend.metrics import sampled_ndcg
from gemini_core.progress import notify


class EpochLog:
    """Closes each epoch: measures validation NDCG@10, keeps the best weights, says when to stop."""

    def __init__(self, split: RankingSplit, settings, progress, start_time: float) -> None:
        self.split, self.settings, self.progress, self.start_time = split, settings, progress, start_time
        self.history: list[dict] = []
        self.best_value, self.best_epoch, self.best_state, self.waited = -math.inf, 0, None, 0
        self.stopped = "epochs"

    def close(self, model: nn.Module, epoch: int, steps: int, loss: float) -> bool:
        """Record ``epoch`` (``steps`` taken so far, mean ``loss``); True when training should stop."""
        value = sampled_ndcg(model, self.split, "val")
        record = {"epoch": epoch, "loss": loss, "val_ndcg_at_10": value, "steps": steps,
                  "seconds": time.perf_counter() - self.start_time}
        self.history.append(record)
        notify(self.progress, "epoch", f"epoch {epoch}: loss {loss:.4f}, validation NDCG@10 {100 * value:.2f}%",
               **record)
        if value > self.best_value:
            self.best_value, self.best_epoch, self.waited = value, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.waited += 1
        if self.settings.max_steps is not None and steps >= self.settings.max_steps:
            self.stopped = "max_steps"
        elif self.settings.patience and self.waited >= self.settings.patience:
            self.stopped = "patience"
        else:
            return False
        return True

    def result(self) -> tuple:
        return self.history, self.best_value, self.best_epoch, self.best_state, self.stopped
