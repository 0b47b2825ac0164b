"""The knowledge-distillation loss: KL divergence from the teacher's to the student's softened
distribution (Hinton et al., 2015). Shared by classifier recovery (``training.loop.train_steps``
with a teacher) and causal-LM recovery (``llm.distill``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Classifier recovery softens both distributions at this temperature: a baseline that is ~99% sure
# of most digits gives near one-hot targets at T=1 (little more than the labels); T=2 shows the
# student which wrong classes the teacher finds close.
CLASSIFIER_TEMPERATURE = 2.0


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened distributions, times T^2 so gradients keep
    their scale as T changes; averaged over positions / examples (the last axis is the classes)."""
    classes = student_logits.shape[-1]
    s = F.log_softmax(student_logits.reshape(-1, classes).float() / temperature, -1)
    t = F.log_softmax(teacher_logits.reshape(-1, classes).float() / temperature, -1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature ** 2
