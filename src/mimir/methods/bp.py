"""``bp``: plain fine-tuning of the pruned student with the labels of the few samples.

Cross-entropy, every parameter trainable (the classifier too), the shared loop and schedule.
Chosen where the protocol is open: the learning rate defaults to MiR's 0.02 so that the comparison
differs in the loss alone (the PRACTISE public scripts use 1e-4 for BP; pass ``lr=1e-4`` / ``--lr``
to reproduce that). The only method besides ``cd-ft``'s last step that sees labels.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from mimir.engine import Task
from mimir.methods._base import Method, MethodInput, fit, register_method


def supervised(student: nn.Module) -> Task:
    """Cross-entropy of the student's logits against the labels of the few samples, all layers."""
    return Task(student, forward=lambda m, x: m(x), loss=F.cross_entropy)


@register_method
class BackProp(Method):
    """Fine-tuning with the labels of the few samples (cross-entropy, all layers)."""

    name = "bp"
    needs_labels = True

    def run(self, inp: MethodInput) -> nn.Module:
        fit(inp, supervised(inp.student), desc=self.name)
        return inp.student.eval()
