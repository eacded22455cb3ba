"""``kd``: Hinton knowledge distillation on logits, no labels.

``T^2 * KL(softmax(t / T) || softmax(s / T))`` with T = 4 (``temperature`` option), batch-mean
reduction, every student parameter trainable (the classifier too), the shared loop and schedule.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mimir.engine import Task
from mimir.methods._base import Method, MethodInput, fit, register_method


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.kl_div(F.log_softmax(student_logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1),
                    reduction="batchmean", log_target=True) * temperature ** 2


@register_method
class KnowledgeDistillation(Method):
    """Hinton distillation on softened logits (T = 4, loss x T^2), no labels."""

    name = "kd"
    options = {"temperature": 4.0}
    ranges = {"temperature": "(0, inf)"}

    def run(self, inp: MethodInput) -> nn.Module:
        teacher, student = inp.teacher.eval(), inp.student
        temperature = self.option(inp, "temperature")
        task = Task(student, forward=lambda m, x: m(x), loss=lambda s, t: kd_loss(s, t, temperature),
                    target=lambda x: teacher(x))
        fit(inp, task, desc=self.name)
        return student.eval()
